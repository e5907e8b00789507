// The dashboard's built assets are embedded in the binary; without them the build cannot say
// what to serve, so it stops and says how to make them.
fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboard/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    if !dist.join("index.html").exists() {
        panic!(
            "{} has no built dashboard: run scripts/build-dashboard.sh (npm ci && npm run build in dashboard/)",
            dist.display()
        );
    }
}
