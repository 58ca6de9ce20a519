"""vector backend per collection; pgvector's chunk_vectors when RAG_VECTOR_BACKEND=pgvector

Revision ID: i20_vector_backends
Revises: 0004
Create Date: 2026-12-04

Every database gets `collections.vector_backend` (existing collections: faiss) and
`collections.vector_type`. Only when the migration runs with the pgvector backend (`search-service
migrate` passes RAG_VECTOR_BACKEND) on PostgreSQL does it create the `vector` extension and the
`chunk_vectors` table (store/vectors.py); on SQLite, or with FAISS, nothing else. A role that may
not create the extension gets an error naming the fix.
"""
import sqlalchemy as sa
from alembic import op

revision = "i20_vector_backends"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch_op:
        batch_op.add_column(sa.Column("vector_backend", sa.String(16), nullable=False, server_default="faiss"))
        batch_op.add_column(sa.Column("vector_type", sa.String(16), nullable=True))
    if op.get_context().config.attributes.get("vector_backend", "faiss") == "pgvector":
        from search_service.store.vectors import ensure_pgvector_schema

        ensure_pgvector_schema(op.get_bind())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS chunk_vectors")  # its HNSW indexes go with it
    if bind.dialect.name == "sqlite":
        # SQLite >= 3.35 drops a column in place. A batch "move and copy" would drop and recreate
        # `collections`, and with foreign keys on, dropping it deletes every job and document of
        # it through ON DELETE CASCADE.
        op.execute("ALTER TABLE collections DROP COLUMN vector_type")
        op.execute("ALTER TABLE collections DROP COLUMN vector_backend")
        return
    op.drop_column("collections", "vector_type")
    op.drop_column("collections", "vector_backend")
