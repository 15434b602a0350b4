"""Commands, handlers, decorators and events in one process (eager Celery, memory events)."""
from dataclasses import dataclass

from celery import Celery

from celery_bgp import BackgroundCommand, BackgroundProcessing, CommandHandler, EventStatus

app = Celery("example", broker="memory://")
app.conf.task_always_eager = True
bgp = BackgroundProcessing(app, event_write="sync")


@dataclass
class ResizeImage(BackgroundCommand):
    url: str
    width: int = 256


class ResizeImageHandler(CommandHandler[ResizeImage]):
    def handle(self, command: ResizeImage) -> dict:
        return {"url": command.url, "width": command.width}


bgp.register_handler(ResizeImageHandler)


@bgp.processor_decorator
def timing(context, call_next):
    result = call_next(context)
    print(f"processed {type(context.command).__name__} {context.command.id}")
    return result


command = ResizeImage(url="https://example.com/cat.png", width=128)
print(bgp.dispatch(command).get())
assert bgp.events.latest(command.id).status is EventStatus.PROCESSED
print([event.status.value for event in bgp.events.all(command.id)])
