"""Model downloader (HuggingFace, S3, TOS, GCS, HTTP)."""
