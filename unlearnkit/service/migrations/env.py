"""Alembic's entry point: migrations run on the connection that `db.migrate` hands over."""

from alembic import context

from unlearnkit.service.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == "sqlite")
context.run_migrations()
