"""catalogue version: a token that changes whenever any song's features may have changed

Persisted embeddings are valid only for the songs they were computed from. A
trigger in the database itself (not the application) replaces the token on every
insert, delete or update of a song's features, so a change made by any program,
an import, a replica or a hand-written SQL statement, invalidates them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SQLITE_EVENTS = {"insert": "INSERT", "delete": "DELETE", "update": "UPDATE OF id, features"}
_SQLITE_NEW_TOKEN = "lower(hex(randomblob(16)))"
_PG_FUNCTION = """
CREATE FUNCTION musicsim_new_catalogue_version() RETURNS trigger AS $$
BEGIN
    UPDATE catalogue_state SET version = md5(random()::text || clock_timestamp()::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "catalogue_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_catalogue_state_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_state")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("INSERT INTO catalogue_state (id, version) VALUES (1, md5(random()::text))")
        op.execute(_PG_FUNCTION)
        # Once per statement, not per row: an import of 100,000 songs bumps it once.
        op.execute(
            "CREATE TRIGGER songs_new_catalogue_version"
            " AFTER INSERT OR DELETE OR UPDATE OF id, features ON songs"
            " FOR EACH STATEMENT EXECUTE FUNCTION musicsim_new_catalogue_version()"
        )
        return
    op.execute(f"INSERT INTO catalogue_state (id, version) VALUES (1, {_SQLITE_NEW_TOKEN})")
    for name, event in _SQLITE_EVENTS.items():  # SQLite has row triggers only
        op.execute(
            f"CREATE TRIGGER songs_new_catalogue_version_{name} AFTER {event} ON songs"
            f" BEGIN UPDATE catalogue_state SET version = {_SQLITE_NEW_TOKEN}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER songs_new_catalogue_version ON songs")
        op.execute("DROP FUNCTION musicsim_new_catalogue_version()")
    else:
        for name in _SQLITE_EVENTS:
            op.execute(f"DROP TRIGGER songs_new_catalogue_version_{name}")
    op.drop_table("catalogue_state")
