"""Compare what a release will run with what the deployment asked for, before any host switches.

Run with the release's Python, as the application user, with the application's environment
(DJANGO_SETTINGS_MODULE is the deployment's overlay):

    verify-settings.py --data <release>/<overlay>.json [--celery-app proj] [--declare]

It loads the project the way its processes will (Django's settings, then the Celery app given by
`-A`), and compares the *effective* values with the overlay's data, which the inventory rendered:
every Django setting the deployment owns, the database, the default queue, the queue each route
resolves to, the transport options, acks_late and the time limits, and each queue's arguments and
exchange type as Celery will declare them. A project that overrides one of them after loading
its settings (e.g. `app.conf.task_default_queue = ...` in its celery.py) is reported with both values.

With --declare, on an AMQP broker, it declares every queue, exchange and binding Celery will
declare, each on a throwaway channel: RabbitMQ refuses (406) an entity that exists in another
form, and the refusal is reported with the entity, both forms and the remedy. Missing entities are
created ("declared <queue>" is printed), which the workers would do anyway.

Prints one line per problem and exits 1 when there is any; never prints a secret.
"""

import argparse
import json
import os
import re
import sys
from urllib.parse import unquote, urlsplit

# Celery settings compared through the objects Celery builds from them, not as raw values.
_STRUCTURED = {"task_queues", "task_routes"}
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for (?P<kind>exchange|queue) '(?P<name>[^']*)'"
    r".*received (?P<wanted>.+?) but current is (?P<current>.+)$"
)


def normal(value):
    """Tuples and lists alike, as JSON sees them."""
    return json.loads(json.dumps(value, default=repr))


class Report:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def compare(self, what: str, effective, wanted) -> None:
        if normal(effective) != normal(wanted):
            self.problems.append(
                f"{what}: the release runs with {normal(effective)!r}, the inventory wants {normal(wanted)!r}"
            )

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def check_django(report: Report, data: dict) -> None:
    import django
    from django.conf import settings

    django.setup()
    for name, wanted in data["django"].items():
        report.compare(f"Django setting {name}", getattr(settings, name, None), wanted)
    for name, items in data["django_extend"].items():
        missing = [item for item in items if item not in getattr(settings, name, [])]
        if missing:
            report.add(f"Django setting {name} lacks {missing!r}, which the deployment adds")
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        default = settings.DATABASES.get("default", {})
        wanted = {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
        }
        for key, value in wanted.items():
            report.compare(f"Django setting DATABASES['default']['{key}']", default.get(key), value)
        if default.get("PASSWORD") != unquote(parts.password or ""):
            report.add(
                "Django setting DATABASES['default']['PASSWORD'] is not the deployment's password"
            )
    if urlsplit(os.environ.get("CACHE_URL", "")).scheme in ("redis", "rediss", "unix"):
        location = settings.CACHES.get("default", {}).get("LOCATION")
        if location != os.environ["CACHE_URL"]:
            report.add(
                "Django setting CACHES['default']['LOCATION'] is not the deployment's cache URL"
            )


def sample_task_name(pattern: str) -> str:
    """A task name that the glob `pattern` matches."""
    return pattern.replace("*", "x").replace("?", "x")


def check_celery(report: Report, data: dict, celery_app: str):
    from celery.app.utils import find_app

    app = find_app(celery_app)
    conf = app.conf
    celery = data["celery"]
    for name, wanted in celery["settings"].items():
        if name in _STRUCTURED:
            continue
        if isinstance(wanted, dict):
            effective = conf.get(name) or {}
            for key, value in wanted.items():
                report.compare(f"Celery setting {name}[{key!r}]", effective.get(key), value)
        else:
            report.compare(f"Celery setting {name}", conf.get(name), wanted)
    if os.environ.get("CELERY_BROKER_URL") and conf.broker_url != os.environ["CELERY_BROKER_URL"]:
        report.add("Celery setting broker_url is not the deployment's broker URL")
    for pattern, target in (celery["settings"].get("task_routes") or {}).items():
        name = sample_task_name(pattern)
        route = app.amqp.router.route({}, name)
        queue = route.get("queue")
        report.compare(
            f"Celery route of {name!r} (pattern {pattern!r})",
            getattr(queue, "name", queue),
            target["queue"],
        )
    declared = app.amqp.queues
    for wanted in celery["queues"]:
        queue = declared.get(wanted["name"])
        if queue is None:
            report.add(
                f"Celery queue {wanted['name']!r}: the release does not declare it "
                f"(it declares {sorted(declared)!r})"
            )
            continue
        what = f"Celery queue {wanted['name']!r}"
        report.compare(
            f"{what} arguments", queue.queue_arguments or {}, wanted["queue_arguments"] or {}
        )
        report.compare(f"{what} exchange", queue.exchange.name, wanted["exchange"])
        report.compare(f"{what} exchange type", queue.exchange.type, wanted["exchange_type"])
        report.compare(f"{what} routing key", queue.routing_key, wanted["routing_key"])
    return app


def declare_on_broker(report: Report, app) -> None:
    """Declare what Celery will declare, each queue on a channel of its own."""
    from amqp.exceptions import NotFound, PreconditionFailed

    with app.connection_for_write() as connection:
        if connection.transport.driver_type != "amqp":
            return
        try:
            connection.ensure_connection(max_retries=3)
        except connection.connection_errors as error:
            report.add(f"cannot connect to the broker as the release would: {error!r}")
            return
        vhost = connection.virtual_host
        for queue in app.amqp.queues.values():
            exists = True
            try:
                with connection.channel() as channel:
                    channel.queue_declare(queue.name, passive=True)
            except NotFound:
                exists = False
            try:
                with connection.channel() as channel:
                    queue(channel).declare()
            except PreconditionFailed as error:
                report.add(inequivalent(str(error.reply_text), queue.name, vhost))
                continue
            if not exists:
                print(f"declared {queue.name}")


def inequivalent(reply: str, queue: str, vhost: str) -> str:
    match = _INEQUIVALENT.search(reply)
    if not match:
        return f"RabbitMQ refused the declaration of queue {queue!r}: {reply}"
    kind, name = match["kind"], match["name"]
    return (
        f"RabbitMQ already has {kind} {name!r} in vhost {vhost!r} with {match['arg']} "
        f"{match['current']}; the new release declares it with {match['wanted']}. RabbitMQ never "
        f"changes an existing {kind}: delete the {kind} on the broker once nothing uses it "
        f"(e.g. `rabbitmqadmin --vhost={vhost} delete {kind} name={name}`; deleting a queue "
        f"drops its messages) and deploy again, or keep the old form in the inventory. "
        f"Every host still runs its previous release."
    )


def main() -> int:
    # Run from the release directory (bin/run): import the project and the overlay from there, as
    # manage.py, Gunicorn and Celery's Django fix-up do.
    sys.path.insert(0, os.getcwd())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the overlay's JSON data")
    parser.add_argument("--celery-app", default="", help="the `celery -A` value")
    parser.add_argument("--declare", action="store_true", help="declare on an AMQP broker")
    args = parser.parse_args()
    with open(args.data) as handle:
        data = json.load(handle)
    report = Report()
    check_django(report, data)
    if args.celery_app:
        app = check_celery(report, data, args.celery_app)
        if args.declare and not report.problems:
            declare_on_broker(report, app)
    for problem in report.problems:
        print(f"problem: {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
