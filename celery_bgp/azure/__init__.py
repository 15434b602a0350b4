"""Azure integrations beyond the broker: the Azure Functions entry point."""
