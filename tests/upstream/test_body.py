"""The streaming request body: buffering until the upstream consumes, back-pressure both ways."""

from twisted.internet.defer import Deferred
from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.upstream.body import BUFFER_HIGH_WATER, BodyAborted, StreamingBody


class Client:
    def __init__(self):
        self.paused = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False


class Consumer:
    def __init__(self):
        self.data = []

    def write(self, data):
        self.data.append(data)


def test_buffers_until_started_then_flushes_and_finishes():
    client = Client()
    body = StreamingBody(None, client)
    assert body.length is UNKNOWN_LENGTH
    body.write(b"a")
    body.write(b"b")
    consumer = Consumer()
    done = body.startProducing(consumer)
    assert consumer.data == [b"a", b"b"]
    body.write(b"c")
    assert consumer.data[-1] == b"c"
    results = []
    done.addCallback(results.append)
    body.finish()
    assert results == [None]


def test_client_is_paused_beyond_high_water_until_the_upstream_takes_it():
    client = Client()
    body = StreamingBody(10 * BUFFER_HIGH_WATER, client)
    body.write(b"x" * (BUFFER_HIGH_WATER + 1))
    assert client.paused
    body.startProducing(Consumer())
    assert not client.paused


def test_upstream_back_pressure_pauses_the_client():
    client = Client()
    body = StreamingBody(100, client)
    consumer = Consumer()
    body.startProducing(consumer)
    body.pauseProducing()
    assert client.paused
    body.write(b"held")
    assert consumer.data == []
    body.resumeProducing()
    assert consumer.data == [b"held"]
    assert not client.paused


def test_abort_fails_the_upstream_write():
    body = StreamingBody(100, Client())
    done: Deferred = body.startProducing(Consumer())
    failures = []
    done.addErrback(failures.append)
    body.abort(BodyAborted("too large"))
    assert failures and failures[0].check(BodyAborted)
    body.write(b"ignored")


def test_finish_before_start_fires_once_started():
    body = StreamingBody(1, Client())
    body.write(b"x")
    body.finish()
    consumer = Consumer()
    results = []
    body.startProducing(consumer).addCallback(results.append)
    assert consumer.data == [b"x"] and results == [None]


# -- replay, for retries ------------------------------------------------------


def test_a_body_not_yet_sent_is_always_replayable():
    body = StreamingBody(5, None)
    body.write(b"hello")
    assert body.replayable
    consumer = Consumer()
    body.attempt().startProducing(consumer)
    assert consumer.data == [b"hello"]


def test_a_kept_body_is_sent_again_from_its_first_byte():
    client = Client()
    body = StreamingBody(None, client)
    body.keep_for_replay(100)
    first = Consumer()
    view = body.attempt()
    view.startProducing(first)
    body.write(b"abc")
    view.stopProducing()  # the attempt failed
    assert body.replayable
    body.write(b"def")  # still arriving: kept for the next attempt
    second = Consumer()
    done = body.attempt().startProducing(second)
    body.write(b"g")
    body.finish()
    assert first.data == [b"abc"] and b"".join(second.data) == b"abcdefg"
    results = []
    done.addCallback(results.append)
    assert results == [None]


def test_a_stale_attempt_cannot_touch_the_body():
    body = StreamingBody(None, Client())
    body.keep_for_replay(100)
    old = body.attempt()
    old.startProducing(Consumer())
    body.write(b"x")
    old.stopProducing()
    new = body.attempt()
    consumer = Consumer()
    new.startProducing(consumer)
    old.stopProducing()
    old.pauseProducing()
    body.write(b"y")
    assert consumer.data == [b"x", b"y"]
    failed = []
    old.startProducing(Consumer()).addErrback(failed.append)
    assert failed and failed[0].check(BodyAborted)


def test_a_body_larger_than_the_replay_buffer_cannot_be_replayed():
    body = StreamingBody(None, Client())
    body.keep_for_replay(4)
    view = body.attempt()
    view.startProducing(Consumer())
    body.write(b"12345")
    assert not body.replayable
    view.stopProducing()
    assert not body.replayable


def test_without_keeping_a_sent_body_is_not_replayable():
    body = StreamingBody(None, Client())
    body.startProducing(Consumer())
    body.write(b"x")
    assert not body.replayable
