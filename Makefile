# The two commands a newcomer needs are `make run` and `make test` (see README.md).

.PHONY: run test stop lambdas bench

# `make run SIMULATOR=off` runs the hub without the simulated fleet.
RUN_ARGS := $(if $(filter off,$(SIMULATOR)),--no-simulator)

run: ## Run the hub locally: LocalStack + infra/ + local gateway + a simulated fleet with its rules
	scripts/run-hub.sh $(RUN_ARGS)

test: ## Every check and test, as CI runs them
	scripts/test.sh

stop: ## Stop the local emulators (LocalStack, and MiniStack if the tests left it running)
	localstack/stop.sh
	ministack/stop.sh

lambdas: ## Release Lambda packages (target/lambda/*/bootstrap.zip)
	scripts/build-lambdas.sh

bench: ## Criterion benchmark of the ingest hot path (load tools: `hub-local bench-c2d|bench-analytics|bench-twins`)
	cargo bench --workspace --bench ingest_hot_path
