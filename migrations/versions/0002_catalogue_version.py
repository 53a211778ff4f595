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
# PostgreSQL: a sequence, not a row, so that concurrent writers never wait on each other;
# bumped at commit (a deferred trigger), so a change is counted when it becomes visible.
_PG_FUNCTION = """
CREATE FUNCTION musicsim_new_catalogue_version() RETURNS trigger AS $$
BEGIN
    PERFORM nextval('catalogue_version_seq');
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
        # The row holds this database's random identity; the sequence counts changes.
        op.execute("INSERT INTO catalogue_state (id, version) VALUES (1, md5(random()::text))")
        op.execute("CREATE SEQUENCE catalogue_version_seq")
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE CONSTRAINT TRIGGER songs_new_catalogue_version"
            " AFTER INSERT OR DELETE OR UPDATE OF id, features ON songs"
            " DEFERRABLE INITIALLY DEFERRED"
            " FOR EACH ROW EXECUTE FUNCTION musicsim_new_catalogue_version()"
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
        op.execute("DROP SEQUENCE catalogue_version_seq")
    else:
        for name in _SQLITE_EVENTS:
            op.execute(f"DROP TRIGGER songs_new_catalogue_version_{name}")
    op.drop_table("catalogue_state")
