"""The eventsourcing package's DCB recorder interface on this store.

eventsourcing's own test case for DCB recorders runs unmodified against it, and a small
eventsourcing DCB application (course subscriptions, written as eventsourcing's examples
are) runs unchanged on its in-memory recorder and on this store, selected by environment
alone, with the same outcomes, and one seat per place when students race for it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dynamic_streams import EventStore
from dynamic_streams.eventsourcing import DynamicStreamsDCBRecorder, Factory
from eventsourcing.dcb.api import DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem
from eventsourcing.dcb.application import DCBApplication
from eventsourcing.dcb.persistence import DCBInfrastructureFactory
from eventsourcing.dcb.tests import DCBRecorderTestCase
from eventsourcing.persistence import InfrastructureFactoryError, IntegrityError


class TestDynamicStreamsDCBRecorder(DCBRecorderTestCase):
    """eventsourcing's shipped assertions, each on a fresh table."""

    recorder: DynamicStreamsDCBRecorder

    @pytest.fixture(autouse=True)
    def _recorder(self, event_store_dsn: str, event_store_table: str) -> Iterator[None]:
        with EventStore(event_store_dsn, table=event_store_table) as store:
            self.recorder = DynamicStreamsDCBRecorder(store)
            yield

    def test_append_read(self) -> None:
        self._test_append_read(self.recorder)

    def test_append_subscribe(self) -> None:
        self._test_append_subscribe(self.recorder)


def test_data_that_is_not_utf8_text_reads_back_byte_for_byte(event_store: EventStore) -> None:
    recorder = DynamicStreamsDCBRecorder(event_store)
    blobs = [b"\xff\x00binary", b"with \x00 nul", '{"b": 1, "a": "é"}'.encode(), b""]
    recorder.append([DCBEvent(type="Blob", data=d) for d in blobs])
    assert [e.event.data for e in recorder.read()] == blobs
    # A limited read knows its head before it is iterated, as eventsourcing's own do.
    assert recorder.read(after=1, limit=2).head == 3
    # Text stays readable where SQL users look; the rest is base64.
    assert [list(e.payload) for e in event_store.read()] == [
        ["base64"],
        ["base64"],
        ["utf8"],
        ["utf8"],
    ]
    assert json.loads(next(iter(event_store.read(after=2))).payload["utf8"]) == {"b": 1, "a": "é"}


# --- A small eventsourcing DCB application, in eventsourcing's style ---


class CourseNotFoundError(Exception):
    pass


class StudentNotFoundError(Exception):
    pass


class CourseFullError(Exception):
    pass


class AlreadyJoinedError(Exception):
    pass


class CourseSubscriptions(DCBApplication):
    """Students join courses while places last; a student joins each course once."""

    def register_course(self, name: str, places: int) -> str:
        course_id = f"course-{uuid.uuid4()}"
        self._append(course_id, "CourseRegistered", {"name": name, "places": places}, [course_id])
        return course_id

    def register_student(self, name: str) -> str:
        student_id = f"student-{uuid.uuid4()}"
        self._append(student_id, "StudentRegistered", {"name": name}, [student_id])
        return student_id

    def join_course(self, student_id: str, course_id: str) -> None:
        boundary = DCBQuery(
            items=[
                DCBQueryItem(types=["StudentRegistered", "StudentJoinedCourse"], tags=[student_id]),
                DCBQueryItem(types=["CourseRegistered", "StudentJoinedCourse"], tags=[course_id]),
            ]
        )
        response = self.recorder.read(boundary)
        places, student_known, joined = None, False, []
        for sequenced in response:
            event, data = sequenced.event, json.loads(sequenced.event.data)
            if event.type == "CourseRegistered":
                places = data["places"]
            elif event.type == "StudentRegistered":
                student_known = True
            elif course_id in event.tags:
                joined.append(data["student_id"])
        if places is None:
            raise CourseNotFoundError(course_id)
        if not student_known:
            raise StudentNotFoundError(student_id)
        if student_id in joined:
            raise AlreadyJoinedError(student_id)
        if len(joined) >= places:
            raise CourseFullError(course_id)
        joined_event = DCBEvent(
            type="StudentJoinedCourse",
            data=json.dumps({"student_id": student_id, "course_id": course_id}).encode(),
            tags=[course_id, student_id],
        )
        self.recorder.append([joined_event], DCBAppendCondition(boundary, after=response.head))

    def students_of(self, course_id: str) -> list[str]:
        query = DCBQuery(items=[DCBQueryItem(types=["StudentJoinedCourse"], tags=[course_id])])
        return [json.loads(e.event.data)["student_id"] for e in self.recorder.read(query)]

    def _append(self, id: str, type: str, data: dict[str, Any], tags: list[str]) -> None:
        never_before = DCBAppendCondition(DCBQuery(items=[DCBQueryItem(types=[type], tags=[id])]))
        event = DCBEvent(type=type, data=json.dumps(data).encode(), tags=tags)
        self.recorder.append([event], never_before)


@pytest.fixture(params=["in memory", "dynamic streams"])
def app(
    request: pytest.FixtureRequest, event_store_dsn: str, event_store_table: str
) -> Iterator[CourseSubscriptions]:
    env = {}
    if request.param == "dynamic streams":
        # Configuration alone: the application's code is the same.
        env = {
            "PERSISTENCE_MODULE": "dynamic_streams.eventsourcing",
            "DYNAMIC_STREAMS_DSN": event_store_dsn,
            "COURSESUBSCRIPTIONS_DYNAMIC_STREAMS_TABLE": event_store_table,
        }
    with CourseSubscriptions(env=env) as application:
        yield application


def test_the_application_runs_unchanged(app: CourseSubscriptions) -> None:
    course = app.register_course("Physics", places=2)
    alice, bob, carol = (app.register_student(n) for n in ("Alice", "Bob", "Carol"))
    app.join_course(alice, course)
    with pytest.raises(AlreadyJoinedError):
        app.join_course(alice, course)
    app.join_course(bob, course)
    with pytest.raises(CourseFullError):
        app.join_course(carol, course)
    with pytest.raises(CourseNotFoundError):
        app.join_course(carol, "course-none")
    with pytest.raises(StudentNotFoundError):
        app.join_course("student-none", course)
    assert app.students_of(course) == [alice, bob]


@pytest.mark.slow
def test_students_racing_for_the_last_place_get_it_once(app: CourseSubscriptions) -> None:
    threads, rounds = 8, 10
    barrier = threading.Barrier(threads)

    def join(student: str, course: str) -> str:
        barrier.wait()
        while True:
            try:
                app.join_course(student, course)
                return "joined"
            except CourseFullError:
                return "full"
            except IntegrityError:
                continue  # another decision landed first: decide again

    with ThreadPoolExecutor(threads) as pool:
        for round_no in range(rounds):
            course = app.register_course(f"Round {round_no}", places=1)
            students = [app.register_student(f"s{i}") for i in range(threads)]
            outcomes = list(pool.map(lambda s, c=course: join(s, c), students))
            assert Counter(outcomes) == {"joined": 1, "full": threads - 1}, round_no
            assert app.students_of(course) == [students[outcomes.index("joined")]], round_no


def test_the_factory_is_selected_by_environment(
    event_store_dsn: str, event_store_table: str
) -> None:
    env = {
        "PERSISTENCE_MODULE": "dynamic_streams.eventsourcing",
        "DYNAMIC_STREAMS_DSN": event_store_dsn,
        "DYNAMIC_STREAMS_TABLE": event_store_table,
    }
    factory = DCBInfrastructureFactory.construct(env)
    assert type(factory) is Factory
    assert isinstance(factory.dcb_recorder(), DynamicStreamsDCBRecorder)
    factory.close()
    with pytest.raises(InfrastructureFactoryError, match="DYNAMIC_STREAMS_DSN"):
        DCBInfrastructureFactory.construct({"PERSISTENCE_MODULE": "dynamic_streams.eventsourcing"})
