"""The one name registry (`tavaal.registry`) and the four registries built on it."""

from __future__ import annotations

import pytest

from tavaal.data.registry import DATASETS, list_datasets
from tavaal.errors import ConfigError, DatasetError
from tavaal.models.base import TASK_MODELS, list_task_models
from tavaal.models.drn import SEGMENTATION_MODELS, list_segmentation_models
from tavaal.registry import Registry
from tavaal.strategies import list_strategies
from tavaal.strategies.registry import STRATEGIES


def test_a_registered_entry_is_found_by_its_name():
    colours = Registry[int]("colour", ConfigError)
    assert colours.add("red", 1) == 1
    assert colours.register("blue")(2) == 2
    assert colours.get("red") == 1
    assert colours.find("blue") == 2
    assert colours.find("green") is None
    assert colours.names() == ["blue", "red"]
    assert list(colours.items()) == [("blue", 2), ("red", 1)]


def test_an_unknown_name_raises_the_given_error_listing_the_known_names():
    colours = Registry[int]("colour", DatasetError)
    colours.add("red", 1)
    colours.add("blue", 2)
    with pytest.raises(DatasetError, match=r"^unknown colour 'green'; known: blue, red$"):
        colours.get("green")


def test_a_name_is_registered_once_unless_replacing_is_asked_for():
    colours = Registry[int]("colour", ConfigError)
    colours.add("red", 1)
    with pytest.raises(ValueError, match="colour 'red' is registered twice"):
        colours.add("red", 3)
    assert colours.get("red") == 1
    colours.add("red", 3, replace=True)
    assert colours.get("red") == 3


@pytest.mark.parametrize(
    ("registry", "listed", "error", "unknown"),
    [
        (STRATEGIES, list_strategies, ConfigError, "unknown method 'oracle'; known: badge, bald, "),
        (TASK_MODELS, list_task_models, ConfigError, "unknown task model 'oracle'; known: "),
        (
            SEGMENTATION_MODELS,
            list_segmentation_models,
            ConfigError,
            "unknown segmentation model 'oracle'; known: drn_d_22, ",
        ),
        (DATASETS, list_datasets, DatasetError, "unknown dataset 'oracle'; known: "),
    ],
)
def test_the_four_registries_are_registry_instances(registry, listed, error, unknown):
    assert isinstance(registry, Registry)
    assert listed() == registry.names() != []
    with pytest.raises(error) as raised:
        registry.get("oracle")
    assert str(raised.value).startswith(unknown)
    assert str(raised.value).endswith(", ".join(registry.names()))
