#!/usr/bin/env python3
"""Receptor mejorado del archivo, como en el curso, para las pruebas de enchufe.

Acepta un cliente, lee 4 bytes big-endian con el tamaño y luego el archivo
por chunks de a lo más 4096 bytes, lo guarda y responde `Gracias.` (UTF-8,
sin largo delante). Solo biblioteca estándar.

Diferencias con el código del curso, para que la prueba sea confiable:
- escucha en el puerto 0 e imprime `PORT <n>`; el destino llega por argumento;
- los 4 bytes del tamaño se leen hasta tenerlos todos (el curso hace un
  solo `recv(4)`, que puede traer menos);
- un EOF antes del tamaño declarado es un error (código 2), no un ciclo
  infinito; hay un `--timeout` en cada espera.

Uso:
  course_file_receiver.py --out RUTA [--host HOST] [--timeout SEGUNDOS]
Salida: `PORT <n>`, luego `RECIBIDO <bytes>`.
"""
import argparse
import socket
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--out", required=True)
parser.add_argument("--timeout", type=float, default=30)
args = parser.parse_args()

familia = socket.AF_INET6 if ":" in args.host else socket.AF_INET
sock = socket.socket(familia, socket.SOCK_STREAM)
sock.bind((args.host, 0))
sock.listen()
sock.settimeout(args.timeout)
print("PORT", sock.getsockname()[1], flush=True)

# Aceptamos un cliente.
sock_cliente, _ = sock.accept()
sock_cliente.settimeout(args.timeout)
print("Conexión entrante aceptada.", file=sys.stderr)

# Leemos primero los 4 bytes del tamaño del archivo.
encabezado = bytearray()
while len(encabezado) < 4:
    datos_recibidos = sock_cliente.recv(4 - len(encabezado))
    if not datos_recibidos:
        print("EOF antes del tamaño", file=sys.stderr)
        sys.exit(2)
    encabezado.extend(datos_recibidos)
largo_archivo = int.from_bytes(encabezado, byteorder="big")
print(f"OK. Ahora sé que debo recibir {largo_archivo} bytes", file=sys.stderr)

# Ahora leemos el archivo por chunks, de máximo 4096 bytes.
datos = bytearray()
while len(datos) < largo_archivo:
    bytes_leer = min(4096, largo_archivo - len(datos))
    datos_recibidos = sock_cliente.recv(bytes_leer)
    if not datos_recibidos:
        print(f"EOF tras {len(datos)} de {largo_archivo} bytes", file=sys.stderr)
        sys.exit(2)
    datos.extend(datos_recibidos)

# Guardamos la información en un archivo.
with open(args.out, "wb") as binfile:
    binfile.write(datos)
print("RECIBIDO", len(datos), flush=True)

# Le enviamos una respuesta a la contraparte.
sock_cliente.sendall("Gracias.".encode("utf-8"))

# Cerramos los sockets.
sock_cliente.close()
sock.close()
