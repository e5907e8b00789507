terraform {
  # 1.9: validations that read other variables (routes name routing_endpoints and archive).
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 6.0"
    }
  }
}
