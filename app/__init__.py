"""pidflow service side: FastAPI REST API, Dash UI and the command line."""
