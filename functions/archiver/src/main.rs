use hub_archiver::ArchiverConfig;
use hub_shared::aws::Clients;
use hub_shared::config::Env;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = ArchiverConfig::from_env(&Env::process())?;
    hub_shared::lambda::run(hub_archiver::build(&config, &Clients::load().await)).await
}
