// The shape of the Model row's `externalData` JSON column (prisma/schema.prisma): one entry per external data file
// stored beside model.onnx. The API writes it at upload and the worker reads it to download a job's inputs, so it is
// declared here, below both (the worker must not import from apps/, issue 16).
export interface ExternalDataFile {
  name: string;
  sizeBytes: number;
  sha256: string;
  storageKey: string;
}
