"""Model and server output is hostile: secrets redacted, text made safe for every output format."""
