"""AssemblyAI Universal Streaming v3, both ends.

``protocol``     the wire facts, pure: parameters and bounds, URL, frames, messages both ways, close codes
``connection``   one session as a sans-I/O state machine, client and server roles
``client``       the client shell: websocket-client, a sender and a receiver thread
``reconnect``    kept audio and the loop that opens a new session after a drop
``server_base``  a WebSocket server on its own event-loop thread (the base of both servers)
``replay``       a real v3 server that replays scripted sessions: the tests' stand-in for the cloud
"""
