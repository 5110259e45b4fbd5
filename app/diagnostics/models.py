from django.db import models


class DrillRun(models.Model):
    """One task a fault drill sent: how often a worker started it and how often it finished.

    At-least-once delivery means `executions` may exceed 1 (a task cut short by a kill or a stop is
    delivered again); `completions` above 1 is a duplicate, a missing row a lost task.
    """

    drill = models.CharField(max_length=64)
    seq = models.PositiveIntegerField()
    executions = models.PositiveIntegerField(default=0)
    completions = models.PositiveIntegerField(default=0)
    # Where the worker that finished it had imported the app's code from (one release directory, or
    # several if a process mixed releases).
    code_dirs = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["drill", "seq"], name="drill_seq_unique")]

    def __str__(self) -> str:
        return f"{self.drill}#{self.seq}: {self.executions} run(s), {self.completions} done"
