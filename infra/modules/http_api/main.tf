resource "aws_apigatewayv2_api" "this" {
  name          = var.name
  protocol_type = "HTTP"
}

resource "aws_cloudwatch_log_group" "access" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest already; a customer-managed KMS key would add cost for no change in who can read the access log (request ids, routes, statuses, source addresses).
  name              = "/aws/apigateway/${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.throttling_burst_limit
    throttling_rate_limit  = var.throttling_rate_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId      = "$context.requestId"
      routeKey       = "$context.routeKey"
      status         = "$context.status"
      latencyMs      = "$context.responseLatency"
      integrationMs  = "$context.integrationLatency"
      authorizerMs   = "$context.authorizer.latency"
      authorizerErr  = "$context.authorizer.error"
      integrationErr = "$context.integrationErrorMessage"
      sourceIp       = "$context.identity.sourceIp"
    })
  }
}

# Simple responses and no caching: the verdict depends on the path (which device) and must see a
# disabled device or a rotated key at once.
resource "aws_apigatewayv2_authorizer" "sas" {
  api_id                            = aws_apigatewayv2_api.this.id
  name                              = "sas"
  authorizer_type                   = "REQUEST"
  authorizer_uri                    = var.authorizer.invoke_arn
  authorizer_payload_format_version = "2.0"
  enable_simple_responses           = true
  identity_sources                  = ["$request.header.Authorization"]
  authorizer_result_ttl_in_seconds  = 0
}

resource "aws_apigatewayv2_integration" "function" {
  for_each = var.functions

  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_uri        = each.value.invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "this" {
  for_each = var.routes

  api_id             = aws_apigatewayv2_api.this.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.function[each.value].id}"
  authorization_type = contains(var.public_routes, each.key) ? "NONE" : "CUSTOM"
  authorizer_id      = contains(var.public_routes, each.key) ? null : aws_apigatewayv2_authorizer.sas.id
}

# Each function may be invoked by this API for its own routes only; path parameters become `*`.
resource "aws_lambda_permission" "route" {
  for_each = var.invoke_permission_per_route ? var.routes : {}

  statement_id  = "api-${substr(sha256(each.key), 0, 16)}"
  action        = "lambda:InvokeFunction"
  function_name = var.functions[each.value].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn = format("%s/%s/%s%s",
    aws_apigatewayv2_api.this.execution_arn,
    aws_apigatewayv2_stage.default.name,
    split(" ", each.key)[0],
    replace(split(" ", each.key)[1], "/\\{[^}]+\\}/", "*"),
  )
}

# Without per-route permissions: each function may be invoked by this API (any route of it).
resource "aws_lambda_permission" "function" {
  for_each = var.invoke_permission_per_route ? toset([]) : toset(values(var.routes))

  statement_id  = "api-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = var.functions[each.key].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/*"
}

resource "aws_lambda_permission" "authorizer" {
  statement_id  = "api-authorizer"
  action        = "lambda:InvokeFunction"
  function_name = var.authorizer.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/authorizers/${aws_apigatewayv2_authorizer.sas.id}"
}
