"""Wire behaviour of the fake Messages API, checked with a plain HTTP client.

The fake is only useful if the real Claude Code accepts it, so these tests
pin what the SDK relies on: the SSE event order and framing, tool input
streamed as ``input_json_delta`` fragments, error shapes, and that side
requests leave the script alone; and that it behaves like the real API in
time and failure: paced deltas, a stream held where a test says, 429/529 with
``retry-after``, an ``error`` event mid-stream, credentials only in their header.
"""

import http.client
import json
import threading

import pytest

from tests.support.fake_anthropic import (
    OVERLOADED_MESSAGE, RATE_LIMIT_MESSAGE, FakeMessagesAPI, Step, overloaded, paused, rate_limited, stream_error,
    text, tool_use,
)

KEY = "sk-ant-test"
OAUTH_TOKEN = "sk-ant-oat01-test"
TOOLS = [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}}]


def conversation(prompt="hello", **extra):
    """A body shaped like Claude Code's main requests (they always offer tools)."""
    return {
        "model": "claude-opus-5-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a test."}],
        "messages": [{"role": "user", "content": prompt}],
        "tools": TOOLS,
        **extra,
    }


def call(api, method, path, body=None, key=KEY, connection=None):
    """One request; returns (response, body bytes). Reuses *connection* if given."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    if connection is None:
        conn.close()
    return response, raw


def sse_events(raw):
    """Parse an SSE body into its data objects, checking each event line."""
    events = []
    for chunk in raw.decode().split("\n\n"):
        if chunk:
            fields = dict(line.split(": ", 1) for line in chunk.splitlines())
            data = json.loads(fields["data"])
            assert data["type"] == fields["event"]
            events.append(data)
    return events


def assemble(events):
    """Rebuild the message the way the SDK does from a stream of events."""
    message = events[0]["message"]
    partial = {}
    for event in events:
        if event["type"] == "content_block_start":
            message["content"].append(event["content_block"])
        elif event["type"] == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
        elif event["type"] == "content_block_stop" and event["index"] in partial:
            message["content"][event["index"]]["input"] = json.loads(partial[event["index"]])
        elif event["type"] == "message_delta":
            message.update(event["delta"], usage=event["usage"])
    return message


def test_streamed_text_follows_the_real_event_order():
    with FakeMessagesAPI([text("Hello from the script")], api_key=KEY) as api:
        response, raw = call(api, "POST", "/v1/messages?beta=true", conversation(stream=True))
    assert response.status == 200
    assert response.getheader("content-type").startswith("text/event-stream")
    assert response.getheader("transfer-encoding") == "chunked"
    assert response.getheader("request-id").startswith("req_")
    events = sse_events(raw)
    assert [e["type"] for e in events[:3]] == ["message_start", "content_block_start", "ping"]
    assert {e["type"] for e in events[3:-3]} == {"content_block_delta"}
    assert [e["type"] for e in events[-3:]] == ["content_block_stop", "message_delta", "message_stop"]
    message = assemble(events)
    assert message["content"] == [{"type": "text", "text": "Hello from the script"}]
    assert message["stop_reason"] == "end_turn"
    assert message["model"] == "claude-opus-5-5"
    assert message["usage"]["output_tokens"] > 0


def test_streamed_tool_use_reassembles_to_its_input():
    command = {"command": "touch /tmp/x && echo 'a \"quoted\" word'", "timeout": 5000}
    with FakeMessagesAPI([tool_use("Bash", command, preamble="Let me run it.")], api_key=KEY) as api:
        _, raw = call(api, "POST", "/v1/messages", conversation(stream=True))
    events = sse_events(raw)
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta" and e["index"] == 1]
    fragments = [d["partial_json"] for d in deltas]
    assert len(fragments) > 2 and fragments[0] == ""
    start = next(e for e in events if e["type"] == "content_block_start" and e["index"] == 1)
    assert start["content_block"]["input"] == {}
    message = assemble(events)
    preamble, call_block = message["content"]
    assert preamble == {"type": "text", "text": "Let me run it."}
    assert call_block["name"] == "Bash" and call_block["id"].startswith("toolu_")
    assert call_block["input"] == command
    assert message["stop_reason"] == "tool_use"


def test_non_streaming_answer_is_a_json_message_and_keep_alive_works():
    with FakeMessagesAPI([text("one"), text("two")], api_key=KEY) as api:
        connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        _, first = call(api, "POST", "/v1/messages", conversation(stream=True), connection=connection)
        response, second = call(api, "POST", "/v1/messages", conversation(), connection=connection)
        connection.close()
    assert assemble(sse_events(first))["content"][0]["text"] == "one"
    assert response.getheader("content-type") == "application/json"
    message = json.loads(second)
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "two"}]
    assert message["id"].startswith("msg_")


def test_the_usage_of_every_whole_reply_is_kept_as_it_was_sent():
    with FakeMessagesAPI([text("one"), text("two")], api_key=KEY) as api:
        _, streamed = call(api, "POST", "/v1/messages", conversation(stream=True))
        _, whole = call(api, "POST", "/v1/messages", conversation())
        sent = api.replied_usage()
    assert sent == [assemble(sse_events(streamed))["usage"], json.loads(whole)["usage"]]
    assert all(usage["input_tokens"] > 0 and usage["output_tokens"] > 0 for usage in sent)


def test_side_requests_do_not_consume_the_script():
    with FakeMessagesAPI([text("scripted")], api_key=KEY, default_text="fallback") as api:
        side = {key: value for key, value in conversation().items() if key != "tools"}
        _, side_reply = call(api, "POST", "/v1/messages", side)
        _, main_reply = call(api, "POST", "/v1/messages", conversation())
        _, after_script = call(api, "POST", "/v1/messages", conversation())
        assert [r.main for r in api.message_requests()] == [False, True, True]
        assert len(api.message_requests(main_only=True)) == 2
    assert json.loads(side_reply)["content"][0]["text"] == "fallback"
    assert json.loads(main_reply)["content"][0]["text"] == "scripted"
    assert json.loads(after_script)["content"][0]["text"] == "fallback"


def test_side_requests_get_the_shape_they_ask_for():
    title = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    output_config = {"format": {"type": "json_schema", "schema": title}}
    title_request = {"model": "m", "max_tokens": 9, "messages": [], "output_config": output_config}
    classifier_request = {"model": "m", "max_tokens": 64, "messages": [], "stop_sequences": ["</block>"]}
    with FakeMessagesAPI(api_key=KEY, default_text="A title") as api:
        _, title_reply = call(api, "POST", "/v1/messages", title_request)
        _, classifier_reply = call(api, "POST", "/v1/messages", dict(classifier_request, stream=True))
    assert json.loads(json.loads(title_reply)["content"][0]["text"]) == {"title": "A title"}
    verdict = assemble(sse_events(classifier_reply))
    assert verdict["content"][0]["text"] == "<block>no"
    assert (verdict["stop_reason"], verdict["stop_sequence"]) == ("stop_sequence", "</block>")


@pytest.mark.parametrize("key", [None, "sk-ant-wrong"])
def test_wrong_or_missing_key_is_an_authentication_error(key):
    with FakeMessagesAPI([text("never")], api_key=KEY) as api:
        response, raw = call(api, "POST", "/v1/messages", conversation(), key=key)
        assert len(api.requests) == 1  # rejected requests are recorded too
    assert response.status == 401
    error = json.loads(raw)
    assert error["type"] == "error"
    assert error["error"]["type"] == "authentication_error"
    assert error["request_id"] == response.getheader("request-id")


@pytest.mark.parametrize("headers, status, message", [
    ({"x-api-key": KEY}, 200, None),
    ({"authorization": f"Bearer {OAUTH_TOKEN}"}, 200, None),
    ({"authorization": f"Bearer {KEY}"}, 401, "Invalid bearer token"),  # an API key is no bearer token
    ({"x-api-key": OAUTH_TOKEN}, 401, "invalid x-api-key"),  # nor an OAuth token an API key
    ({"authorization": "Bearer sk-ant-oat01-wrong"}, 401, "Invalid bearer token"),
])
def test_each_credential_counts_only_in_its_own_header(headers, status, message):
    with FakeMessagesAPI([text("hi")], api_key=KEY, oauth_token=OAUTH_TOKEN) as api:
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        conn.request("POST", "/v1/messages", json.dumps(conversation()), headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
    assert response.status == status
    if message:
        assert json.loads(raw)["error"] == {"type": "authentication_error", "message": message}


def stream(api, **extra):
    """A streaming request; the response, its headers read, its body not yet."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.request("POST", "/v1/messages", json.dumps(conversation(stream=True, **extra)),
                 {"content-type": "application/json", "x-api-key": KEY})
    return conn.getresponse()


def next_event(response):
    """The data of the next SSE event on *response*, read line by line as it arrives."""
    fields = {}
    while line := response.readline().decode().rstrip("\n"):
        name, _, value = line.partition(": ")
        fields[name] = value
    return json.loads(fields["data"])


def test_deltas_are_paced_by_the_servers_gap_or_the_steps():
    """Each delta leaves at least its gap after the one before (a sleep's lower bound, not a race)."""
    with FakeMessagesAPI([text("one two three"), Step(text("four five six").content, "end_turn", gap=0.12)],
                         api_key=KEY, gap=0.04) as api:
        for _ in range(2):
            call(api, "POST", "/v1/messages", conversation(stream=True))
        sent = api.sent
    deltas = [e for e in sent if e.name == "content_block_delta"]
    assert [d.data["delta"]["text"] for d in deltas] == ["one ", "two ", "three", "four ", "five ", "six"]
    gaps = [later.at - earlier.at for earlier, later in zip(deltas, deltas[1:])]
    assert min(gaps[:2]) >= 0.04 and min(gaps[3:]) >= 0.12


def test_the_timeline_records_every_event_sent_for_its_request():
    with FakeMessagesAPI([text("Hello there")], api_key=KEY) as api:
        _, raw = call(api, "POST", "/v1/messages", conversation(stream=True))
        (request,) = api.message_requests()
        sent = api.sent
    assert [(e.name, e.data) for e in sent] == [(e["type"], {k: v for k, v in e.items() if k != "type"})
                                               for e in sse_events(raw)]
    assert all(e.request is request for e in sent)
    assert [e.at for e in sent] == sorted(e.at for e in sent)


def test_a_paused_stream_sends_the_rest_only_once_released():
    release = threading.Event()
    with FakeMessagesAPI([paused(release, text("first second third"), after=1)], api_key=KEY) as api:
        response = stream(api)
        events = [next_event(response) for _ in range(4)]  # message_start, content_block_start, ping, a delta
        assert events[3]["delta"]["text"] == "first "
        assert [e.name for e in api.sent].count("content_block_delta") == 1  # and no more while held
        release.set()
        rest = sse_events(response.read())
    assert [e["delta"]["text"] for e in rest if e["type"] == "content_block_delta"] == ["second ", "third"]
    assert rest[-1]["type"] == "message_stop"


def test_a_step_cannot_pause_or_fail_after_more_deltas_than_it_has():
    with pytest.raises(ValueError, match="streams 2 deltas"):
        paused(threading.Event(), text("two words"), after=2)
    with pytest.raises(ValueError, match="streams 2 deltas"):
        stream_error(text("two words"), after=2)


@pytest.mark.parametrize("step, status, kind, message", [
    (rate_limited(retry_after=7), 429, "rate_limit_error", RATE_LIMIT_MESSAGE),
    (overloaded(retry_after=7), 529, "overloaded_error", OVERLOADED_MESSAGE),
])
def test_a_failure_is_answered_like_the_real_api_and_the_script_goes_on(step, status, kind, message):
    with FakeMessagesAPI([step, text("after the retry")], api_key=KEY) as api:
        response, raw = call(api, "POST", "/v1/messages", conversation(stream=True))
        _, retried = call(api, "POST", "/v1/messages", conversation())
    assert (response.status, response.getheader("retry-after")) == (status, "7")
    assert response.getheader("content-type") == "application/json"
    assert json.loads(raw) == {"type": "error", "error": {"type": kind, "message": message},
                               "request_id": response.getheader("request-id")}
    assert json.loads(retried)["content"][0]["text"] == "after the retry"


def test_a_stream_error_breaks_off_the_reply_with_an_error_event():
    with FakeMessagesAPI([stream_error(text("one two three four"), after=2)], api_key=KEY) as api:
        response, raw = call(api, "POST", "/v1/messages", conversation(stream=True))
    assert response.status == 200
    events = sse_events(raw)
    assert [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"] == ["one ", "two "]
    assert events[-1] == {"type": "error", "error": {"type": "overloaded_error", "message": OVERLOADED_MESSAGE}}


def test_a_stream_error_is_a_529_for_a_request_that_does_not_stream():
    with FakeMessagesAPI([stream_error()], api_key=KEY) as api:
        response, raw = call(api, "POST", "/v1/messages", conversation())
    assert response.status == 529
    assert json.loads(raw)["error"]["type"] == "overloaded_error"


def test_unknown_path_is_a_not_found_error():
    with FakeMessagesAPI(api_key=KEY) as api:
        response, raw = call(api, "GET", "/v1/models")
    assert response.status == 404
    assert json.loads(raw)["error"]["type"] == "not_found_error"


def test_count_tokens_answers_a_plausible_count():
    with FakeMessagesAPI(api_key=KEY) as api:
        response, raw = call(api, "POST", "/v1/messages/count_tokens?beta=true", conversation())
    assert response.status == 200
    assert json.loads(raw)["input_tokens"] > 10


def test_requests_are_recorded_with_text_helpers():
    body = conversation(system="Be brief. SYSTEM-MARKER")
    ls = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "RESULT-MARKER"}
    body["messages"] += [
        {"role": "assistant", "content": [ls]},
        {"role": "user", "content": [result]},
        {"role": "system", "content": [{"type": "text", "text": "Skills: SKILL-MARKER"}]},
    ]
    with FakeMessagesAPI(api_key=KEY) as api:
        call(api, "POST", "/v1/messages?beta=true", body)
        (request,) = api.message_requests()
    assert (request.method, request.path) == ("POST", "/v1/messages?beta=true")
    assert request.headers["x-api-key"] == KEY
    assert request.body == body
    assert api.system_text(request) == "Be brief. SYSTEM-MARKER"
    everything = api.all_text(request)
    for marker in ("SYSTEM-MARKER", "hello", "RESULT-MARKER", "SKILL-MARKER"):
        assert marker in everything


def test_wait_for_sees_requests_from_other_threads_and_times_out():
    with FakeMessagesAPI(api_key=KEY) as api:
        threading.Timer(0.2, call, (api, "POST", "/v1/messages", conversation("late"))).start()
        request = api.wait_for(lambda r: "late" in api.all_text(r), timeout=10)
        assert request.main
        with pytest.raises(TimeoutError):
            api.wait_for(lambda r: False, timeout=0.1)
