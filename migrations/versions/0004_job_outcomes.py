"""job outcomes: request id, retry time, kept collection name, longer statuses

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Jobs outlive their collection (a deleted collection's jobs end `cancelled`), so `collection_id`
becomes nullable and the name is kept on the job. `request_id` ties a job to the upload's log
lines; `error_code` is the slug of `error`; `run_after` holds back a transiently failed job for its back-off; statuses such as
`indexed_with_errors` need more than 16 characters.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("collection_name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("run_after", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("error_code", sa.String(length=64), nullable=True))
        batch_op.alter_column("collection_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                              nullable=True)
        batch_op.alter_column("status", existing_type=sa.String(length=16), type_=sa.String(length=32),
                              existing_nullable=False)
    op.execute(
        "UPDATE jobs SET collection_name = "
        "(SELECT collections.name FROM collections WHERE collections.id = jobs.collection_id)"
    )


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE collection_id IS NULL")
    op.execute("UPDATE jobs SET status = 'failed' WHERE length(status) > 16")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.alter_column("status", existing_type=sa.String(length=32), type_=sa.String(length=16),
                              existing_nullable=False)
        batch_op.alter_column("collection_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                              nullable=False)
        batch_op.drop_column("error_code")
        batch_op.drop_column("run_after")
        batch_op.drop_column("request_id")
        batch_op.drop_column("collection_name")
