"""Modal dialogs: confirmations and the small forms behind run actions."""
