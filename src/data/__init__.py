"""The long ratings table, its validation and loaders."""
