"""Cloud storage: E2E-encrypted records in a blob store, vectors in Qdrant, tier quotas."""
