"""What a user looks at: plots (PNG), the HTML report, the live progress display."""
