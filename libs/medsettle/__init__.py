"""Shared code of the one-stop settlement services: the contract's messages,
policies, settings, logging, Kafka and PostgreSQL wiring."""
