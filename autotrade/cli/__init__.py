"""The command line: typer commands and terminal rendering; nothing else imports this package."""
