#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    hub_shared::lambda::run(hub_dashboard::build()).await
}
