"""Alembic environment: runs migrations on musicsim's engine.

The engine comes from app.db.upgrade_database (config.attributes["engine"]), or,
for the alembic command line, from `-x url=...` or MUSICSIM_DATABASE_URL.
"""

from alembic import context

from app.config import Settings
from app.db import create_db_engine
from app.orm import Base

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        url = context.get_x_argument(as_dictionary=True).get("url") or Settings().database_url
        engine = create_db_engine(url)
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=True,  # SQLite alters tables by copying them
        )
        context.run_migrations()


run_migrations_online()
