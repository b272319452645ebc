#!/usr/bin/env python3
"""An independent QUIC client (aioquic) speaking Parley: the gateway must interoperate with it.

    python3 aioquic_client.py --port PORT --cert CERT.pem --token JWT --conversation UUID

Opens one bidirectional stream with ALPN parley/1, sends Hello, reads Welcome, sends a message
and reads its Ack, prints READY, then waits for a MessageNew from someone else and prints one
JSON line with what it saw. Frames are u32 little-endian length + FlatBuffers, built and read
with the Python code flatc generated from the same chat.fbs (schema/python).
"""

import argparse
import asyncio
import json
import os
import struct
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "schema", "python"))

import flatbuffers  # noqa: E402
from aioquic.asyncio import connect  # noqa: E402
from aioquic.asyncio.protocol import QuicConnectionProtocol  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived  # noqa: E402
from parley.wire import (  # noqa: E402
    Ack,
    ClientBody,
    ClientFrame,
    Error,
    Hello,
    MessageNew,
    Send,
    ServerBody,
    ServerFrame,
    Uuid,
    Welcome,
)


def frame(seq, body_type, build_body):
    b = flatbuffers.Builder(256)
    body = build_body(b)
    ClientFrame.Start(b)
    ClientFrame.AddSeq(b, seq)
    ClientFrame.AddBodyType(b, body_type)
    ClientFrame.AddBody(b, body)
    b.Finish(ClientFrame.End(b))
    data = bytes(b.Output())
    return struct.pack("<I", len(data)) + data


def hello(token):
    def build(b):
        tok = b.CreateString(token)
        name = b.CreateString("aioquic-test")
        Hello.Start(b)
        Hello.AddToken(b, tok)
        Hello.AddProtocolMajor(b, 1)
        Hello.AddProtocolMinor(b, 0)
        Hello.AddClientName(b, name)
        return Hello.End(b)

    return build


def send(conversation, client_msg_id, text):
    hi, lo = struct.unpack(">QQ", uuid.UUID(conversation).bytes)

    def build(b):
        cid = b.CreateString(client_msg_id)
        content = b.CreateString(text)
        Send.Start(b)
        Send.AddConversation(b, Uuid.CreateUuid(b, hi, lo))
        Send.AddClientMsgId(b, cid)
        Send.AddContent(b, content)
        return Send.End(b)

    return build


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames = asyncio.Queue()
        self.buf = b""

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self.buf += event.data
            while len(self.buf) >= 4:
                (n,) = struct.unpack("<I", self.buf[:4])
                if len(self.buf) < 4 + n:
                    break
                self.frames.put_nowait(self.buf[4 : 4 + n])
                self.buf = self.buf[4 + n :]
        elif isinstance(event, ConnectionTerminated):
            self.frames.put_nowait(None)


async def next_frame(client, timeout=10):
    data = await asyncio.wait_for(client.frames.get(), timeout)
    if data is None:
        raise SystemExit("connection closed")
    return ServerFrame.ServerFrame.GetRootAs(data, 0)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--conversation", required=True)
    a = p.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=["parley/1"], server_name="localhost")
    config.load_verify_locations(a.cert)
    seen = {}
    async with connect(a.host, a.port, configuration=config, create_protocol=Client) as client:
        quic = client._quic
        stream = quic.get_next_available_stream_id()
        quic.send_stream_data(stream, frame(1, ClientBody.ClientBody.Hello, hello(a.token)))
        client.transmit()
        f = await next_frame(client)
        assert f.BodyType() == ServerBody.ServerBody.Welcome, f.BodyType()
        w = Welcome.Welcome()
        w.Init(f.Body().Bytes, f.Body().Pos)
        seen["welcome_user"] = w.UserId().decode()
        seen["alpn"] = quic.tls.alpn_negotiated

        quic.send_stream_data(stream, frame(2, ClientBody.ClientBody.Send, send(a.conversation, "py-1", "hello from aioquic")))
        client.transmit()
        while True:
            f = await next_frame(client)
            if f.Seq() == 2:
                break
        if f.BodyType() == ServerBody.ServerBody.Error:
            e = Error.Error()
            e.Init(f.Body().Bytes, f.Body().Pos)
            raise SystemExit(f"send refused: {e.Code()} {e.Message()}")
        assert f.BodyType() == ServerBody.ServerBody.Ack, f.BodyType()
        ack = Ack.Ack()
        ack.Init(f.Body().Bytes, f.Body().Pos)
        seen["ack_message_id"] = str(ack.MessageId())
        print("READY", flush=True)

        while True:
            f = await next_frame(client)
            if f.BodyType() == ServerBody.ServerBody.MessageNew:
                m = MessageNew.MessageNew()
                m.Init(f.Body().Bytes, f.Body().Pos)
                msg = m.Message()
                seen["message_new"] = {
                    "id": str(msg.Id()),
                    "sender": msg.SenderId().decode(),
                    "content": msg.Content().decode(),
                }
                break
    print(json.dumps(seen), flush=True)


asyncio.run(main())
