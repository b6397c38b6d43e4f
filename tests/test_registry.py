"""Registry: built-ins arrive through entry points; unknown names fail with the known list."""
import pytest

from wslbench import registry
from wslbench.errors import WslbenchError
from wslbench.methods import Method


def test_builtins_are_discovered_through_entry_points():
    assert "cam-avg" in registry.list_methods()
    assert "synthetic" in registry.list_datasets()
    entry = registry.method_entry("cam-avg")
    assert entry.source.startswith("entry point baselines.cam:")


def test_unknown_method_lists_known_names_and_closest_match():
    with pytest.raises(WslbenchError) as err:
        registry.create_method("cam-avq", num_classes=2)
    msg = str(err.value)
    assert "unknown method 'cam-avq'" in msg
    assert "Did you mean 'cam-avg'?" in msg
    assert "cam-avg" in msg.split("Known methods:")[1]


def test_unknown_dataset_lists_known_names():
    with pytest.raises(WslbenchError) as err:
        registry.create_dataset("synthetik", split="train")
    assert "Did you mean 'synthetic'?" in str(err.value)


def test_decorator_registers_and_create_builds_with_config():
    @registry.register_method("unit-test-method")
    class Tiny(Method):
        """A method only this test knows."""

        def __init__(self, num_classes, width=3):
            super().__init__(num_classes, width=width)
            self.width = width

    try:
        m = registry.create_method("unit-test-method", num_classes=4, width=7)
        assert isinstance(m, Tiny) and m.width == 7 and m.num_classes == 4
        assert registry.method_entry("unit-test-method").description == "A method only this test knows."
        assert "unit-test-method" in registry.list_methods()
    finally:
        registry.METHODS._entries.pop("unit-test-method")


def test_registering_another_object_under_a_taken_name_fails():
    with pytest.raises(WslbenchError, match="registered twice"):
        registry.register_method("cam-avg")(type("Other", (Method,), {}))


@pytest.mark.parametrize("doc, first", [
    ("One line.", "One line."),
    ("Spans\n    two lines. Second sentence.", "Spans two lines."),
    ("ACoL (Zhang et al. 2018): two branches. More.", "ACoL (Zhang et al. 2018): two branches."),
    ("Uses e.g. a ResNet, i.e. a CNN, with 1.5x maps. More.", "Uses e.g. a ResNet, i.e. a CNN, with 1.5x maps."),
    ("No period in the first paragraph\n\n    Second paragraph. More.", "No period in the first paragraph"),
    ("Ends at the end.", "Ends at the end."),
    ("", ""),
    (None, ""),
])
def test_description_is_the_docstrings_first_sentence(doc, first):
    assert registry.first_sentence(doc) == first


def test_broken_entry_point_is_reported_and_cleared_once_it_loads(monkeypatch):
    monkeypatch.setattr(registry.METHODS, "_broken", {"gone": "pkg.mod:Gone: ModuleNotFoundError: No module named 'pkg'"})
    assert registry.METHODS.broken() == {"gone": "pkg.mod:Gone: ModuleNotFoundError: No module named 'pkg'"}
    with pytest.raises(WslbenchError, match="'gone' failed to load: pkg.mod:Gone: ModuleNotFoundError"):
        registry.method_entry("gone")
    registry.METHODS._broken["cam-avg"] = "baselines.cam:CamAvg: ImportError: stale"  # it loads now
    registry.METHODS.discover(force=True)
    assert "cam-avg" not in registry.METHODS.broken() and "gone" in registry.METHODS.broken()
