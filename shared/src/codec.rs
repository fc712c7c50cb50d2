//! The protobuf codec of the client API: prost's, except that a message that
//! cannot be decoded (truncated, wrong wire type, invalid UTF-8 in a string
//! field) is the caller's fault and is answered with `INVALID_ARGUMENT`
//! rather than prost's `INTERNAL`, which would blame the server.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Used by the generated code through `codec_path` in `build.rs`.
#[derive(Debug, Clone)]
pub struct ChatCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ChatCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ChatCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ChatDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ChatDecoder(ProstDecoder::default())
    }
}

/// Prost's decoder with decode failures mapped to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ChatDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ChatDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            Status::invalid_argument(format!("malformed message: {}", status.message()))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
