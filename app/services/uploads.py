"""Features files (app/uploads.py does the checking and storing): upload, delete, describe, their images."""

from __future__ import annotations

from app.services.base import ServiceBase


class Uploads(ServiceBase):
    """Uploaded features files."""

    def upload_features(self, data: bytes, filename: str | None = None, token: str | None = None) -> dict:
        """Check and store a features file; its summary and the request that analyses it."""
        return self._call(self.uploads.upload, data, filename, token)

    def delete_features(self, features_id: str, token: str | None = None) -> bool:
        """Remove an uploaded features file; hosted mode: only a token that uploaded it (PermissionError)."""
        return self._call(self.uploads.delete, features_id, token)

    def features_info(self, features_id: str) -> dict:
        return self._call(self.uploads.info, features_id)

    def uploaded_image(self, image_id: str) -> bytes | None:
        """PNG of a question image from a features file, None when `image_id` is a dataset image."""
        return self._call(self.uploads.image, image_id)
