"""Tests of the deployment artefacts: Dockerfile, docker-compose.yml, the Helm chart, workflows."""
