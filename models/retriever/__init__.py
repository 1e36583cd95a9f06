"""The retrieval embedder: FIT site documents in ChromaDB, fine-tuned from user feedback."""
