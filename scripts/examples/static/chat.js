// The demo chat: the browser's WebSocket against ws.WebSocketServer on /chat.
'use strict';

const log = document.getElementById('log');
const statusLine = document.getElementById('status');
const form = document.getElementById('form');
const nameInput = document.getElementById('name');
const textInput = document.getElementById('text');
const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/chat`;
let socket = null;
let retry = 500;

function show(text, kind) {
  const item = document.createElement('li');
  item.textContent = text; // never innerHTML: messages come from strangers
  if (kind) item.className = kind;
  log.appendChild(item);
  log.scrollTop = log.scrollHeight;
}

function connect() {
  socket = new WebSocket(url);
  statusLine.textContent = `connecting to ${url}…`;
  socket.addEventListener('open', () => {
    statusLine.textContent = `connected to ${url}`;
    retry = 500;
  });
  socket.addEventListener('message', (event) => show(event.data));
  socket.addEventListener('close', (event) => {
    statusLine.textContent = `disconnected (${event.code}); reconnecting…`;
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  });
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = textInput.value.trim();
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(`${nameInput.value.trim() || 'guest'}: ${text}`);
  textInput.value = '';
});

connect();
