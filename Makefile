# Contributor entry points: thin wrappers over the scripts (README: ./pyro and ./test.sh stay the way in).
.PHONY: help setup check test bench smoke-use-cases

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

setup: ## host packages (scripts/host-setup.sh), then build and publish the native CLI
	bash -c 'source scripts/host-setup.sh && pyro_ensure_host && pyro_build "$$PWD"'

check: ## build with warnings as errors, then the fast test project (no guests)
	dotnet build pyro.slnx -c Release -nologo -v quiet -clp:ErrorsOnly -p:TreatWarningsAsErrors=true
	dotnet test tests/PyroMcp.Tests -c Release --no-build -nologo

test: ## every test, guests included (./test.sh)
	./test.sh

bench: ## the bench, as bench/README.md runs it
	dotnet run -c Release --project bench/PyroMcp.Bench -- --json

smoke-use-cases: ## every docs/use-cases recipe against real guests, one line each (scripts/smoke-use-cases.sh)
	scripts/smoke-use-cases.sh
