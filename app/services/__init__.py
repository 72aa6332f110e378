"""The service's resources, one module each, combined by the facade app.service.AnalysisService: base (errors,
shared state, Redis/broker failures), catalogue (models, datasets, images), validation (request checks and
cost), analyses, results, listings, sharing, studies, uploads, ratelimit, health."""
