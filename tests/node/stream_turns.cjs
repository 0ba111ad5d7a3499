// The official AssemblyAI Node SDK's StreamingTranscriber, as a user runs it, against a v3 server.
//   node stream_turns.cjs WSS_URL API_KEY AUDIO.pcm   (16 kHz mono PCM16; NODE_PATH finds the `assemblyai` package)
// Prints one JSON line per event (Begin, each Turn, Closed) on stdout; exits 1 with the reason on stderr.
const fs = require("fs");
const { StreamingTranscriber } = require("assemblyai");

const [url, apiKey, file] = process.argv.slice(2);
const FRAME = 3200; // 100 ms: the SDK sends what it is given, and the last frame must not be shorter than 50 ms

async function main() {
  const transcriber = new StreamingTranscriber({
    websocketBaseUrl: url, apiKey, sampleRate: 16000, formatTurns: true, connectTimeout: 60000,
  });
  transcriber.on("turn", (turn) => console.log(JSON.stringify({
    type: "Turn", turn_order: turn.turn_order, end_of_turn: turn.end_of_turn,
    turn_is_formatted: turn.turn_is_formatted, transcript: turn.transcript,
  })));
  transcriber.on("error", (error) => console.error(`error: ${error && error.message}`));
  const begin = await transcriber.connect();
  console.log(JSON.stringify({ type: "Begin", id: begin.id }));
  const pcm = fs.readFileSync(file);
  for (let i = 0; i < pcm.length; i += FRAME) {
    const frame = Buffer.alloc(FRAME);
    pcm.copy(frame, 0, i, Math.min(i + FRAME, pcm.length));
    transcriber.sendAudio(frame);
  }
  await transcriber.close(true); // Terminate, then wait for Termination
  console.log(JSON.stringify({ type: "Closed" }));
}

main().catch((error) => {
  console.error(`failed: ${error && error.message}`);
  process.exit(1);
});
