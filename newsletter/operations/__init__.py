"""What an operator asks of the whole site: check it, and its status."""
