"""TaskFlow decorators: ``@task.kontext`` and ``@task.kontext_batch`` (registered through the provider info)."""
