"""Event handlers: one module per concern, a registry of event name to function, the inbox drain."""
