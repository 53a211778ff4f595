"""musicsim's similarity service (FastAPI + SQLAlchemy + FAISS)."""
