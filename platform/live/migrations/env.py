"""Alembic environment: runs on the connection `store.migrate` hands over (no alembic.ini).

Alembic executes this file to migrate; importing it as a module (the packaging tests import every
module) must do nothing, and `alembic.context` has a `config` only while Alembic runs it.
"""

from alembic import context

from cangtwin.platform.live.schema import metadata


def run_migrations() -> None:
    context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if hasattr(context, "config"):
    run_migrations()
