"""helpdesk: queues, knowledge base, contacts, satisfaction survey

Revision ID: helpdesk_0001
Revises: 0001_core
Create Date: 2026-12-02 04:40:53.136049
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.types

revision: str = "helpdesk_0001"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("helpdesk",)
depends_on: str | Sequence[str] | None = "logistics_0001"


def upgrade() -> None:

    op.create_table(
        "survey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("seed", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("response_rate", sa.Float(), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("sample", sa.Integer(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("month"),
    )
    op.create_table(
        "helpdesk_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("phone_number", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("hours", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("updated_at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client_company.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id"),
    )
    op.create_table(
        "kb_article",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("slug", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("welcome_section", sa.String(length=16), nullable=True),
        sa.Column("archived_at", core.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client_company.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "slug", "language", name="uq_kb_article_slug_lang"),
    )
    with op.batch_alter_table("kb_article", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_article_client_id"), ["client_id"], unique=False)

    op.create_table(
        "survey_answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("reachability", sa.Integer(), nullable=True),
        sa.Column("welcome", sa.Integer(), nullable=True),
        sa.Column("speed", sa.Integer(), nullable=True),
        sa.Column("availability", sa.Integer(), nullable=True),
        sa.Column("clarity", sa.Integer(), nullable=True),
        sa.Column("solution", sa.Integer(), nullable=True),
        sa.Column("comment", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("answered_on", sa.Date(), nullable=False),
        sa.Column("anonymised_at", core.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["client_company.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["survey_id"], ["survey.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("survey_answer", schema=None) as batch_op:
        batch_op.create_index(
            "ix_survey_answer_survey_client", ["survey_id", "client_id"], unique=False
        )

    op.create_table(
        "survey_stratum",
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.Column("drawn", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client_company.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["survey_id"], ["survey.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("survey_id", "client_id"),
    )
    op.create_table(
        "kb_article_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("welcome_section", sa.String(length=16), nullable=True),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kb_article.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("article_id", "version", name="uq_kb_version"),
    )
    op.create_table(
        "kb_term",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("term", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kb_article.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["client_id"], ["client_company.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("article_id", "term"),
    )
    with op.batch_alter_table("kb_term", schema=None) as batch_op:
        batch_op.create_index("ix_kb_term_client_term", ["client_id", "term"], unique=False)

    op.create_table(
        "survey_call",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("teleworker_id", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("anonymised_at", core.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["client_company.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["survey_id"], ["survey.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["teleworker_id"], ["teleworker.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("survey_call", schema=None) as batch_op:
        batch_op.create_index(
            "ix_survey_call_survey_client", ["survey_id", "client_id"], unique=False
        )

    op.create_table(
        "survey_optout",
        sa.Column("teleworker_id", sa.Integer(), nullable=False),
        sa.Column("at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["teleworker_id"], ["teleworker.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("teleworker_id"),
    )
    op.create_table(
        "helpdesk_contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("teleworker_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("item", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("resolved_first_contact", sa.Boolean(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("week", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("anonymised_at", core.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["article_id"], ["kb_article.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["client_id"], ["client_company.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["teleworker_id"], ["teleworker.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("helpdesk_contact", schema=None) as batch_op:
        batch_op.create_index("ix_helpdesk_contact_client_at", ["client_id", "at"], unique=False)
        batch_op.create_index("ix_helpdesk_contact_device", ["device_id"], unique=False)
        batch_op.create_index("ix_helpdesk_contact_teleworker", ["teleworker_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("helpdesk_contact", schema=None) as batch_op:
        batch_op.drop_index("ix_helpdesk_contact_teleworker")
        batch_op.drop_index("ix_helpdesk_contact_device")
        batch_op.drop_index("ix_helpdesk_contact_client_at")

    op.drop_table("helpdesk_contact")
    op.drop_table("survey_optout")
    with op.batch_alter_table("survey_call", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_call_survey_client")

    op.drop_table("survey_call")
    with op.batch_alter_table("kb_term", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_term_client_term")

    op.drop_table("kb_term")
    op.drop_table("kb_article_version")
    op.drop_table("survey_stratum")
    with op.batch_alter_table("survey_answer", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_answer_survey_client")

    op.drop_table("survey_answer")
    with op.batch_alter_table("kb_article", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_article_client_id"))

    op.drop_table("kb_article")
    op.drop_table("helpdesk_queue")
    op.drop_table("survey")
