#!/usr/bin/env python3
"""Emisor mejorado del archivo, como en el curso, para las pruebas de enchufe.

Envía el tamaño del archivo en 4 bytes big-endian y luego el archivo, con
`send` en un ciclo hasta que todo salió; después imprime la respuesta del
receptor (que debe ser `Gracias.`). Solo biblioteca estándar.

Diferencias con el código del curso, para que la prueba sea confiable:
- la dirección y el archivo llegan por argumentos;
- el envío avanza con un `memoryview` (el curso corta `datos[enviados:]`,
  que copia lo que falta en cada vuelta);
- con `--shutdown`, tras el cuerpo se cierra la escritura
  (`shutdown(SHUT_WR)`) y aun así se espera la respuesta;
- la respuesta se lee hasta `Gracias.` o EOF (no un solo `recv(4096)`),
  y hay un `--timeout` en cada espera.

Uso:
  course_file_sender.py --port PUERTO --file RUTA [--host HOST]
                        [--shutdown] [--timeout SEGUNDOS]
Salida: `Respuesta: <texto>`; código 0 si la respuesta fue `Gracias.`.
"""
import argparse
import socket
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--file", required=True)
parser.add_argument("--shutdown", action="store_true")
parser.add_argument("--timeout", type=float, default=30)
args = parser.parse_args()

familia = socket.AF_INET6 if ":" in args.host else socket.AF_INET
sock = socket.socket(familia, socket.SOCK_STREAM)
sock.settimeout(args.timeout)

# Nos conectamos al receptor del archivo, que ya debería estar escuchando.
sock.connect((args.host, args.port))
print("Conexión establecida.", file=sys.stderr)

# Leemos el archivo y lo enviamos.
with open(args.file, "rb") as binfile:
    datos = binfile.read()
largo_archivo = len(datos)
print(f"Voy a enviar {largo_archivo} bytes", file=sys.stderr)

# 1. Enviar el tamaño del archivo.
sock.sendall(largo_archivo.to_bytes(4, byteorder="big"))

# 2. Enviar el archivo, desde el último punto efectivamente enviado.
vista = memoryview(datos)
bytes_enviados = 0
while bytes_enviados < largo_archivo:
    bytes_enviados += sock.send(vista[bytes_enviados:])
print("¡Archivo enviado!", file=sys.stderr)

# 3. Cerrar la escritura: el receptor sigue pudiendo responder.
if args.shutdown:
    sock.shutdown(socket.SHUT_WR)

# Imprimimos lo que nos responda la contraparte.
respuesta = bytearray()
while respuesta != b"Gracias." and len(respuesta) < 4096:
    datos_recibidos = sock.recv(4096 - len(respuesta))
    if not datos_recibidos:
        break
    respuesta.extend(datos_recibidos)
print("Respuesta:", respuesta.decode("utf-8"), flush=True)

sock.close()
sys.exit(0 if respuesta == b"Gracias." else 1)
