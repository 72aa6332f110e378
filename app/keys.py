"""Redis keys that the routes (app/api) and the services (app/services) both use; below both, so neither
imports the other for them."""

#: Hosted mode: a study is read through a random handle (like analyses, app.registry), never its content id,
#: which anyone who guesses the request could compute.
HANDLE_PREFIX = "pidflow:study-handle:"
OWNER_PREFIX = "pidflow:study-owner:"
