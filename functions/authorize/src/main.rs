use std::convert::Infallible;

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use hub_authorize::{Authorizer, AuthorizerConfig};
use hub_shared::aws::{DynamoDbDeviceRegistry, DynamoDbPolicyStore, sdk_config};
use hub_shared::config::Env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = AuthorizerConfig::from_env(&Env::process())?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let authorizer = Authorizer::new(
        DynamoDbDeviceRegistry::new(dynamodb.clone(), &config.registry_table),
        DynamoDbPolicyStore::new(dynamodb, &config.policies_table),
        &config.host_name,
        config.clock_skew,
    );
    let authorizer = &authorizer;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
            Ok::<_, Infallible>(authorizer.handle(&event.payload).await)
        },
    ))
    .await
}
