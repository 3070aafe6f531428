"""Tasks: what differs between classification and semantic segmentation (`Task`), chosen by the
dataset (`DatasetInfo.task`)."""

from __future__ import annotations

from tavaal.data import DatasetInfo
from tavaal.errors import ConfigError
from tavaal.tasks.base import Task
from tavaal.tasks.classification import ClassificationTask
from tavaal.tasks.segmentation import SegmentationTask

TASKS: dict[str, Task] = {task.name: task for task in (ClassificationTask(), SegmentationTask())}


def get_task(name: str) -> Task:
    """The task called `name` ("classification" or "segmentation")."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def task_of(info: DatasetInfo) -> Task:
    """The task of a prepared dataset."""
    return get_task(info.task)


__all__ = ["TASKS", "ClassificationTask", "SegmentationTask", "Task", "get_task", "task_of"]
