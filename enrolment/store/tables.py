"""Table definitions (SQLAlchemy Core): every table the migrations in enrolment/store/migrations create.

Reference tables (states, users, course_batches, batch_mentors) are loaded by the imports; the
processor owns enrolments, command_ledger, uploads and consumer_positions (its exactly-once state); the
dashboard owns the ``dash_`` tables (its read model); ``api_tokens`` holds the APIs' bearer tokens (hashed,
with their lifecycle).
tests/core/test_schema.py checks that a database migrated to head matches this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

states = Table(
    "states",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("state_id", Text, nullable=True, doc="External id, unique within a state"),
    Column("state", Text, ForeignKey("states.code"), nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("roles", ARRAY(Text), nullable=False, server_default="{}"),
    Column("status", Text, nullable=False, server_default="active"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # 0009: optional profile columns of Sunbird's course progress report (users import)
    Column("org_name", Text, nullable=True),
    Column("district", Text, nullable=True),
    Column("block", Text, nullable=True),
    Column("school_name", Text, nullable=True),
    Column("school_udise", Text, nullable=True),
    CheckConstraint("status IN ('active','inactive')", name="users_status_check"),
    UniqueConstraint("state", "state_id", name="users_state_state_id_key"),
)

course_batches = Table(
    "course_batches",
    metadata,
    Column("batch_id", Text, primary_key=True),
    Column("course_id", Text, nullable=False),
    Column("course_name", Text, nullable=False, server_default=""),
    Column("state", Text, ForeignKey("states.code"), nullable=False),
    Column("enrollment_type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("start_date", Date, nullable=True),
    Column("end_date", Date, nullable=True),
    Column("participant_count", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("enrollment_type IN ('invite-only','open')", name="course_batches_type_check"),
    CheckConstraint("status IN ('upcoming','ongoing','ended','cancelled')", name="course_batches_status_check"),
)
Index("course_batches_course_idx", course_batches.c.course_id)

batch_mentors = Table(
    "batch_mentors",
    metadata,
    Column("batch_id", Text, ForeignKey("course_batches.batch_id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Text, nullable=False),
    PrimaryKeyConstraint("batch_id", "user_id"),
)
Index("batch_mentors_user_idx", batch_mentors.c.user_id)

enrolments = Table(
    "enrolments",
    metadata,
    Column("batch_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("added_via", Text, nullable=False),
    Column("enrolled_at", DateTime(timezone=True), nullable=False),
    Column("enrolled_by", Text, nullable=False),
    Column("command_id", Text, nullable=False),
    Column("progress", Integer, nullable=False, server_default="0"),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("batch_id", "user_id"),
)

command_ledger = Table(
    "command_ledger",
    metadata,
    Column("command_id", Text, primary_key=True),
    Column("upload_id", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("kafka_topic", Text, nullable=False, server_default=""),
    Column("group_id", Text, nullable=False, server_default="", doc="Consumer group that applied the command"),
    Column("kafka_partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("line", Integer, nullable=False),
    Column("identifier", Text, nullable=False),
    Column("id_type", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("user_id", Text, nullable=True),
    Column("course_id", Text, nullable=True),
    Column("participant_count", Integer, nullable=True),
    Column("dry_run", Boolean, nullable=False),
    Column("source", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    Column("origin_upload_id", Text, nullable=True),
    Column("origin_line", Integer, nullable=True),
)
Index("command_ledger_upload_idx", command_ledger.c.upload_id)
Index(
    "command_ledger_position_idx",
    command_ledger.c.group_id,
    command_ledger.c.kafka_topic,
    command_ledger.c.kafka_partition,
    command_ledger.c.kafka_offset,
)

uploads = Table(
    "uploads",
    metadata,
    Column("upload_id", Text, primary_key=True),
    Column("batch_id", Text, nullable=False),
    Column("kind", Text, nullable=False, server_default="add"),
    Column("requested_by", Text, nullable=False, server_default=""),
    Column("dry_run", Boolean, nullable=False, server_default="false"),
    Column("file_name", Text, nullable=True),
    Column("parent_upload_id", Text, nullable=True),
    Column("commands_published", Integer, nullable=True),
    Column("refused", JSONB, nullable=False, server_default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=True),
    Column("submitted_by", Text, nullable=True, doc="Who sent it (0007): the API's user or cli:LOGIN"),
    Column("include_completed", Boolean, nullable=False, server_default="false", doc="0009: removes completers too"),
    Column("sealed_topic", Text, nullable=True),
    Column("sealed_group", Text, nullable=True),
    Column("sealed_partition", Integer, nullable=True),
    Column("sealed_offset", BigInteger, nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("outcomes", JSONB, nullable=True),
    Column("reasons", JSONB, nullable=True),
    Column("plan_id", Text, nullable=True, doc="0011: the plan this upload applied"),
    Column("content_hash", Text, nullable=True, doc="0011: SHA-256 of the file (the resubmission check)"),
)
Index("uploads_batch_idx", uploads.c.batch_id)
Index(
    "uploads_content_idx",
    uploads.c.content_hash,
    uploads.c.batch_id,
    postgresql_where=text("content_hash IS NOT NULL"),
)
Index(
    "uploads_sealed_idx",
    uploads.c.sealed_group,
    uploads.c.sealed_topic,
    uploads.c.sealed_partition,
    uploads.c.sealed_offset,
)

course_completions = Table(
    "course_completions",
    metadata,
    Column("batch_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("course_id", Text, nullable=True, doc="The batch's course when the completion was recorded"),
    Column("completed_at", DateTime(timezone=True), nullable=False, doc="The earliest completion reported"),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("batch_id", "user_id"),
)

consumer_positions = Table(
    "consumer_positions",
    metadata,
    Column("group_id", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("batch_start", BigInteger, nullable=False, doc="First offset of the last applied batch (in-doubt window)"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("group_id", "topic", "kafka_partition"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source_topic", Text, nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),
    Column("dead_lettered_at", DateTime(timezone=True), nullable=False),
    Column("replayed_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("source_topic", "kafka_partition", "kafka_offset", name="dead_letters_position_key"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_sha256", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # 0005: the lifecycle (public id, name, creator, expiry, last use, revoker); label is kept, name mirrors it
    Column(
        "token_id",
        Text,
        nullable=False,
        server_default=text("('tok_'::text || substr(md5((random())::text), 1, 12))"),
    ),
    Column("name", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, server_default=text("(now() + '90 days'::interval)")),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_by", Text, nullable=True),
)
Index("api_tokens_token_id_idx", api_tokens.c.token_id, unique=True)
Index("api_tokens_user_idx", api_tokens.c.user_id)

# 0010: Sunbird's bulk upload API — a processId spans several batches, each an upload (enrolment.store.bulk)
bulk_processes = Table(
    "bulk_processes",
    metadata,
    Column("process_id", Text, nullable=False),
    Column("position", Integer, nullable=False),
    Column("upload_id", Text, primary_key=True),
    Column("batch_id", Text, nullable=False),
    Column("operation", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("ids", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    UniqueConstraint("process_id", "position", name="bulk_processes_position_key"),
)

# 0013: the file of each upload, recorded when it is published (the resubmission check while it is in progress)
published_files = Table(
    "published_files",
    metadata,
    Column("upload_id", Text, primary_key=True),
    Column("batch_id", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("published_by", Text, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)
Index("published_files_content_idx", published_files.c.content_hash, published_files.c.batch_id)

# 0011: plans (plan, approve, apply), their rows, per-state approval and breaker settings (enrolment.store.plans)
plans = Table(
    "plans",
    metadata,
    Column("plan_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="waiting"),
    Column("made_by", Text, nullable=False),
    Column("submitted_by", Text, nullable=True),
    Column("made_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("content_hash", Text, nullable=True),
    Column("file_name", Text, nullable=True),
    Column("counts", JSONB, nullable=False, server_default="{}"),
    Column("basis", JSONB, nullable=False, server_default="{}", doc="commands partition -> processor position"),
    Column("batch_size", Integer, nullable=False, server_default="0"),
    Column("needs_approval_reason", Text, nullable=True),
    Column("breaker", JSONB, nullable=True),
    Column("include_completed", Boolean, nullable=False, server_default="false"),
    Column("allow_repeat", Boolean, nullable=False, server_default="false"),
    Column("decided_by", Text, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("upload_id", Text, nullable=True),
    Column("applied_at", DateTime(timezone=True), nullable=True),
    Column("changed_since", JSONB, nullable=True),  # 0012: user ids fixed at the approval
    CheckConstraint("kind IN ('add','remove','sync')", name="plans_kind_check"),
    CheckConstraint("status IN ('waiting','approved','rejected','applied','expired')", name="plans_status_check"),
)
Index("plans_batch_idx", plans.c.batch_id, plans.c.made_at)
Index("plans_waiting_idx", plans.c.state, plans.c.status)

plan_rows = Table(
    "plan_rows",
    metadata,
    Column("plan_id", Text, ForeignKey("plans.plan_id", ondelete="CASCADE"), nullable=False),
    Column("line", Integer, nullable=False),
    Column("id_type", Text, nullable=True),
    Column("identifier", Text, nullable=False),
    Column("user_id", Text, nullable=True),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("message", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("plan_id", "line"),
)

plan_settings = Table(
    "plan_settings",
    metadata,
    Column("state", Text, ForeignKey("states.code", ondelete="CASCADE"), primary_key=True),
    Column("team_approval_required", Boolean, nullable=False, server_default="true"),
    Column("breaker_percent", Float, nullable=False, server_default="10"),
    Column("breaker_max_removals", Integer, nullable=False, server_default="500"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# ------------------------------------------------------------------------------ the dashboard's read model (0002)
# Every row carries the dashboard consumer group that built it, so one dashboard's rebuild touches only its rows.

dash_positions = Table(
    "dash_positions",
    metadata,
    Column("group_id", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("group_id", "topic", "kafka_partition"),
)

dash_applied_events = Table(
    "dash_applied_events",
    metadata,
    Column("group_id", Text, nullable=False),
    Column("event_id", Text, nullable=False, doc='"event:<event id>" or "result:<command id>"'),
    PrimaryKeyConstraint("group_id", "event_id"),
)

dash_members = Table(
    "dash_members",
    metadata,
    Column("group_id", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("course_id", Text, nullable=False, server_default=""),
    Column("enrolled_at", DateTime(timezone=True), nullable=False),
    Column("added_via", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("name", Text, nullable=False, server_default="", doc="Copy of users.name: the table's sort key"),
    Column("state_id", Text, nullable=True, doc="Copy of users.state_id"),
    PrimaryKeyConstraint("group_id", "batch_id", "user_id"),
)
Index(
    "dash_members_enrolled_idx",
    dash_members.c.group_id,
    dash_members.c.batch_id,
    dash_members.c.enrolled_at,
    dash_members.c.user_id,
)
Index(
    "dash_members_name_idx",
    dash_members.c.group_id,
    dash_members.c.batch_id,
    dash_members.c.name,
    dash_members.c.user_id,
)
Index("dash_members_user_idx", dash_members.c.user_id)

dash_batch_counts = Table(
    "dash_batch_counts",
    metadata,
    Column("group_id", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("course_id", Text, nullable=False, server_default=""),
    Column("participant_count", Integer, nullable=False, server_default="0"),
    Column("last_event_at", DateTime(timezone=True), nullable=False, doc="Time of the last membership event"),
    PrimaryKeyConstraint("group_id", "batch_id"),
    CheckConstraint("participant_count >= 0", name="dash_batch_counts_nonnegative"),
)

dash_progress = Table(
    "dash_progress",
    metadata,
    Column("group_id", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("progress", SmallInteger, nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("group_id", "batch_id", "user_id"),
    CheckConstraint("progress BETWEEN 0 AND 100", name="dash_progress_percent"),
)

dash_uploads = Table(
    "dash_uploads",
    metadata,
    Column("group_id", Text, nullable=False),
    Column("upload_id", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("kind", Text, nullable=True),
    Column("requested_by", Text, nullable=True),
    Column("dry_run", Boolean, nullable=False, server_default="false"),
    Column("file_name", Text, nullable=True),
    Column("parent_upload_id", Text, nullable=True),
    Column("commands_published", Integer, nullable=True),
    Column("refused", JSONB, nullable=False, server_default="[]"),
    Column("processed", Integer, nullable=False, server_default="0"),
    Column("outcomes", JSONB, nullable=False, server_default="{}"),
    Column("reasons", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, doc="Earliest time any message names"),
    Column("submitted_by", Text, nullable=True),
    PrimaryKeyConstraint("group_id", "upload_id"),
)
Index("dash_uploads_batch_idx", dash_uploads.c.group_id, dash_uploads.c.batch_id)
Index("dash_uploads_recent_idx", dash_uploads.c.group_id, dash_uploads.c.first_seen_at)

# ------------------------------------------------------------------------------ dashboard sign-in (0006)
# Accounts, sessions and the implementation team's states go with their user (ON DELETE CASCADE).

accounts = Table(
    "accounts",
    metadata,
    Column("user_id", Text, ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True),
    Column("password_hash", Text, nullable=False, doc="argon2id, in argon2's encoded form"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("session_sha256", Text, primary_key=True, doc="SHA-256 of the cookie's random value"),
    Column("user_id", Text, ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)
Index("web_sessions_user_idx", web_sessions.c.user_id)

sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("user_id", Text, nullable=False, doc="the user id that was tried (it may not exist)"),
    Column("client", Text, nullable=False, doc="the client's address"),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)
Index("sign_in_failures_user_idx", sign_in_failures.c.user_id, sign_in_failures.c.failed_at)
Index("sign_in_failures_client_idx", sign_in_failures.c.client, sign_in_failures.c.failed_at)

served_states = Table(
    "served_states",
    metadata,
    Column("user_id", Text, ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("state", Text, ForeignKey("states.code", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("user_id", "state"),
)
