/**
 * Uploaded files, in memory and bounded: the oldest go first once the total
 * passes its cap. Served back by a plain HTTP route of the same app.
 */
import { randomUUID } from 'node:crypto'

export const MAX_FILE_BYTES = 8 * 1024 * 1024
const MAX_TOTAL_BYTES = 128 * 1024 * 1024

// Shown inline; anything else is served as a download (an uploaded HTML or
// SVG file must never run script on this origin).
const INLINE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp'])

export interface StoredFile { id: string, name: string, mimeType: string, data: Buffer }

export class FileStore {
  private readonly files = new Map<string, StoredFile>()
  private total = 0

  add (name: string, mimeType: string, data: Buffer): StoredFile {
    const file = { id: randomUUID(), name, mimeType, data }
    this.files.set(file.id, file)
    this.total += data.byteLength
    for (const [id, old] of this.files) {
      if (this.total <= MAX_TOTAL_BYTES) break
      this.files.delete(id)
      this.total -= old.data.byteLength
    }
    return file
  }

  get (id: string): StoredFile | undefined {
    return this.files.get(id)
  }

  static inline (mimeType: string): boolean {
    return INLINE_TYPES.has(mimeType)
  }
}
