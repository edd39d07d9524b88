"""The sandbox adapters held to the port contracts: the very checks of the Docker Engine, registry
and HTTP suites (taken from those modules), run on a sandbox's folders, then what only a sandbox
has: its missing folders, the hand-over to the real adapters, and the shell scripts and the
adapter reading each other's writes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from adapters.memory.docker import MemoryContainerEngine, MemoryDockerConnector, MemoryRegistry
from adapters.memory.http import MemoryHttpCheck
from adapters.sandbox import FileHttpCheck, SandboxConnector, SandboxRegistry
from bot.domain.errors import ContainerEngineUnavailable, HttpCheckFailed, RegistryUnavailable
from bot.domain.inventory import DockerEndpoint, Registry
from bot.domain.ports import ContainerEngine
from bot.sandbox import DEPLOY, IMAGE, create_sandbox, publish
from tests.contract import test_container_engine_contract as engine_suite
from tests.contract import test_http_check_contract as http_suite
from tests.contract import test_registry_contract as registry_suite


def sandbox_url(folder: Path) -> str:
    return "sandbox" + folder.as_uri().removeprefix("file")


def engine_sh(engine: Path, script: str, *args: str) -> str:
    """Run `script` with the sandbox scripts' engine functions (lib/engine.sh) on `engine`."""
    prelude = 'die() { echo "$*" >&2; exit 1; }; . "$ENGINE_LIB"; '
    done = subprocess.run(
        ["/bin/sh", "-euc", prelude + script, "engine-sh", *args],
        env={
            **os.environ,
            "SANDBOX_ENGINE": str(engine),
            "ENGINE_LIB": str(DEPLOY / "myst" / "lib" / "engine.sh"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class TestSandboxEngine:
    """`ContainerEngine`: every check of the Docker suite but its endpoint rules (which URLs and
    TLS settings reach a daemon), which a folder has none of."""

    @pytest.fixture
    def world(self, tmp_path: Path) -> engine_suite.World:
        root = create_sandbox(tmp_path / "sandbox").parent
        connector = SandboxConnector()

        def start(name: str, image: str, running: bool) -> None:
            # As start.sh makes them: through the scripts' own engine functions.
            script = 'container_create "$1" "$(image_id "$2")"'
            if not running:
                script += ' && container_exit "$1"'
            engine_sh(root / "engine", script, name, image)

        def take_down() -> ContainerEngine:
            spare = create_sandbox(tmp_path / "spare").parent
            engine = connector.connect(DockerEndpoint(url=sandbox_url(spare / "engine")))
            shutil.rmtree(spare / "engine")
            return engine

        endpoint = DockerEndpoint(url=sandbox_url(root / "engine"))
        return engine_suite.World(connector, endpoint, IMAGE, "contract", start, take_down)

    test_an_engine_that_does_not_answer_is_unavailable = staticmethod(
        engine_suite.test_an_engine_that_does_not_answer_is_unavailable
    )
    test_an_engine_that_stops_answering_is_unavailable = staticmethod(
        engine_suite.test_an_engine_that_stops_answering_is_unavailable
    )
    test_an_unknown_container_is_not_found = staticmethod(
        engine_suite.test_an_unknown_container_is_not_found
    )
    test_a_pulled_image_is_listed_under_its_repository = staticmethod(
        engine_suite.test_a_pulled_image_is_listed_under_its_repository
    )
    test_pulling_a_tag_the_registry_lacks_is_image_not_found = staticmethod(
        engine_suite.test_pulling_a_tag_the_registry_lacks_is_image_not_found
    )
    test_pulling_a_repository_the_registry_lacks_is_image_not_found = staticmethod(
        engine_suite.test_pulling_a_repository_the_registry_lacks_is_image_not_found
    )
    test_pulling_an_invalid_name_is_image_not_found = staticmethod(
        engine_suite.test_pulling_an_invalid_name_is_image_not_found
    )
    test_pulling_from_a_registry_that_does_not_answer_is_registry_unavailable = staticmethod(
        engine_suite.test_pulling_from_a_registry_that_does_not_answer_is_registry_unavailable
    )
    test_tag_points_the_target_at_the_source_and_moves_it = staticmethod(
        engine_suite.test_tag_points_the_target_at_the_source_and_moves_it
    )
    test_tagging_an_unknown_image_is_image_not_found = staticmethod(
        engine_suite.test_tagging_an_unknown_image_is_image_not_found
    )
    test_tagging_with_an_invalid_name_is_image_not_found = staticmethod(
        engine_suite.test_tagging_with_an_invalid_name_is_image_not_found
    )
    test_a_container_shows_its_image_and_the_tags_pointing_there_now = staticmethod(
        engine_suite.test_a_container_shows_its_image_and_the_tags_pointing_there_now
    )
    test_a_stopped_container_says_exited = staticmethod(
        engine_suite.test_a_stopped_container_says_exited
    )
    test_close_is_idempotent = staticmethod(engine_suite.test_close_is_idempotent)


class TestSandboxRegistry:
    """`ImageRegistry`: the checks that do not need credentials (a folder asks for none)."""

    @pytest.fixture
    def world(self, tmp_path: Path) -> registry_suite.World:
        for tag in registry_suite.TAGS:
            publish(tmp_path / "registry", f"contract/app:{tag}", tag)
        plain = Registry(url=(tmp_path / "registry").as_uri())
        return registry_suite.World(SandboxRegistry(), plain, "contract/app", plain)

    test_all_tags_of_a_repository = staticmethod(registry_suite.test_all_tags_of_a_repository)
    test_an_unknown_repository_has_no_tags = staticmethod(
        registry_suite.test_an_unknown_repository_has_no_tags
    )
    test_a_registry_that_does_not_answer_is_unavailable = staticmethod(
        registry_suite.test_a_registry_that_does_not_answer_is_unavailable
    )


class TestFileHttpCheck:
    """`HttpCheck`: the checks of pages that answer 200 (a file has no other status)."""

    @pytest.fixture
    def site(self, tmp_path: Path) -> http_suite.Site:
        def write(path: str, body: str, status: int) -> None:
            assert status == 200, "a file:// page always answers 200"
            (tmp_path / path.lstrip("/")).write_text(body, encoding="utf-8")

        return http_suite.Site(FileHttpCheck(), tmp_path.as_uri(), write)

    test_a_page_is_read_with_its_status = staticmethod(
        http_suite.test_a_page_is_read_with_its_status
    )
    test_the_body_is_bounded = staticmethod(http_suite.test_the_body_is_bounded)
    test_utf8_text_survives = staticmethod(http_suite.test_utf8_text_survives)
    test_nothing_listening_is_a_failure_naming_the_url = staticmethod(
        http_suite.test_nothing_listening_is_a_failure_naming_the_url
    )


# What only a sandbox has.


def test_missing_folders_are_things_that_do_not_answer(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    with pytest.raises(ContainerEngineUnavailable, match="is not an engine folder"):
        SandboxConnector().connect(DockerEndpoint(url=sandbox_url(gone)))
    with pytest.raises(RegistryUnavailable, match="no folder"):
        SandboxRegistry().tags(Registry(url=gone.as_uri()), "myst-studio")
    page = (gone / "index.html").as_uri()
    with pytest.raises(HttpCheckFailed, match="Nothing answered") as caught:
        FileHttpCheck().get(page, timeout=1)
    assert caught.value.host == page


def test_other_urls_go_to_the_real_adapter_and_half_sandbox_ones_nowhere(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    registry.push("registry.test/app:1.0")
    memory_engine = MemoryContainerEngine(registry, url="unix:///memory/docker.sock")
    pages = MemoryHttpCheck()
    pages.set_page("http://console.test/", "Version 1.0")
    connector = SandboxConnector(fallback=MemoryDockerConnector({memory_engine.url: memory_engine}))
    registries, check = SandboxRegistry(fallback=registry), FileHttpCheck(fallback=pages)

    assert connector.connect(DockerEndpoint(url=memory_engine.url)) is memory_engine
    assert registries.tags(Registry(url="http://registry.test"), "app") == ["1.0"]
    assert check.get("http://console.test/", timeout=1).body == "Version 1.0"
    # A relative sandbox or file URL is a mistake in the config, not the real adapter's business.
    with pytest.raises(ContainerEngineUnavailable, match="sandbox:///<folder>"):
        connector.connect(DockerEndpoint(url="sandbox:engine"))
    with pytest.raises(RegistryUnavailable, match="file:///<folder>"):
        registries.tags(Registry(url="file:registry"), "app")
    with pytest.raises(HttpCheckFailed, match="not a file:/// URL"):
        check.get("file:console/index.html", timeout=1)


def test_the_scripts_and_the_adapter_read_each_others_writes(tmp_path: Path) -> None:
    root = create_sandbox(tmp_path / "sandbox", version="3.9.1").parent
    engine = SandboxConnector().connect(DockerEndpoint(url=sandbox_url(root / "engine")))
    pulled = engine.pull(f"{IMAGE}:3.10.0")  # Python pulls and tags ...
    engine.tag(f"{IMAGE}:3.10.0", "myst-studio")

    # ... the scripts see it; they pull, and Python sees that.
    assert engine_sh(root / "engine", 'image_id "$1"', "myst-studio").strip() == pulled.id
    engine_sh(root / "engine", 'pull_image "$1" >/dev/null', f"{IMAGE}:3.9.0.3")
    listed = {tag for image in engine.images(IMAGE) for tag in image.tags}
    assert listed == {f"{IMAGE}:{v}" for v in ("3.9.0.3", "3.9.1", "3.10.0")} | {
        "myst-studio:latest"  # 3.10.0's other tag
    }
    running = engine.container("myst-studio")  # start.sh made it
    assert running.status == "running"
    assert f"{IMAGE}:3.9.1" in running.image_tags
    assert "myst-studio:latest" not in running.image_tags
