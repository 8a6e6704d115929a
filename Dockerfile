FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sailplane ./sailplane
RUN pip install --no-cache-dir .
ENTRYPOINT ["sailplane"]
CMD ["serve", "--host", "0.0.0.0"]
