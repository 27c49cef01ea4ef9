"""Tasks: data plus the metric a model is scored by."""
from automl.tasks.base import ClassificationData, ClassificationTask, Task, TaskInfo

__all__ = ["ClassificationData", "ClassificationTask", "Task", "TaskInfo"]
