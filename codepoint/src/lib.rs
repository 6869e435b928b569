//! Open code-point newtypes (STYLE rule 5): one macro, [`code_point!`], for every registry of
//! numbers a protocol defines (iSCSI opcodes and status codes, SCSI operation codes and sense
//! keys, NBD commands, iBFT structure ids).
//!
//! ```text
//!  code_point! { pub struct Opcode(u8) { NOP_OUT = 0x00, .. } }
//!      ──► struct Opcode(pub u8)       an unknown value is kept as-is (parse/emit round trip)
//!          Opcode::NOP_OUT, ..         one associated const per registered value
//!          name(), Debug (+ Display)   the const's name, or the value's text when one is given
//!          From<u8>, From<Opcode> for u8
//! ```
//!
//! The crate has no dependencies and expands only to `core` items, so any crate can use it.
#![no_std]
#![forbid(unsafe_code)]

/// Defines an open code-point newtype: `struct Name(pub repr)` over any integer type, with one
/// associated const per known value.
///
/// # What it generates
/// - the struct, deriving `Clone, Copy, Eq, Hash, Ord, PartialEq, PartialOrd`; attributes
///   written before `struct` (docs, further derives such as `Default`) go on the struct. Do not
///   add `Default` to a type that also derives zerocopy's `FromZeros` (STYLE rule 15);
/// - `pub const NAME: Self` for each value, with the attributes (docs) written before it;
/// - `name(self) -> Option<&'static str>`: the value's text when the values carry one
///   (`NAME = value => "text"`), otherwise the const's name; `None` for an unknown value;
/// - `Debug`: the const's name, or `Name(<value>)` for an unknown value;
/// - `Display`, only when the values carry texts: the text, or `<value>` for an unknown value;
/// - `From<repr> for Name` and `From<Name> for repr`.
///
/// An unknown value is formatted with `{:#x}` (`Opcode(0x1c)`), or with the format string given
/// after `as` (`pub struct Id(u8) as "{}" { .. }` prints `Id(9)`). Either every value of a type
/// has a text or none has.
///
/// # Example
/// ```
/// sanshim_codepoint::code_point! {
///     /// A sense key (SPC-5 §4.4.2).
///     pub struct SenseKey(u8) as "{:#04x}" {
///         /// No sense.
///         NO_SENSE = 0x00 => "NO SENSE",
///         /// Illegal request.
///         ILLEGAL_REQUEST = 0x05 => "ILLEGAL REQUEST",
///     }
/// }
///
/// assert_eq!(format!("{:?}", SenseKey::ILLEGAL_REQUEST), "ILLEGAL_REQUEST");
/// assert_eq!(SenseKey::ILLEGAL_REQUEST.to_string(), "ILLEGAL REQUEST");
/// assert_eq!(format!("{:?}", SenseKey(0x0c)), "SenseKey(0x0c)");
/// assert_eq!(SenseKey::from(0x0c).to_string(), "0x0c");
/// ```
#[macro_export]
macro_rules! code_point {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($repr:ty) as $unknown:literal {
            $( $(#[$cmeta:meta])* $konst:ident = $value:expr => $text:literal ),* $(,)?
        }
    ) => {
        $crate::code_point! {
            @texts [$(#[$meta])*] $vis $name $repr, $unknown,
            [$( [$(#[$cmeta])*] $konst = $value => $text; )*]
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($repr:ty) {
            $( $(#[$cmeta:meta])* $konst:ident = $value:expr => $text:literal ),* $(,)?
        }
    ) => {
        $crate::code_point! {
            @texts [$(#[$meta])*] $vis $name $repr, "{:#x}",
            [$( [$(#[$cmeta])*] $konst = $value => $text; )*]
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($repr:ty) as $unknown:literal {
            $( $(#[$cmeta:meta])* $konst:ident = $value:expr ),* $(,)?
        }
    ) => {
        $crate::code_point! {
            @names [$(#[$meta])*] $vis $name $repr, $unknown,
            [$( [$(#[$cmeta])*] $konst = $value; )*]
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident($repr:ty) {
            $( $(#[$cmeta:meta])* $konst:ident = $value:expr ),* $(,)?
        }
    ) => {
        $crate::code_point! {
            @names [$(#[$meta])*] $vis $name $repr, "{:#x}",
            [$( [$(#[$cmeta])*] $konst = $value; )*]
        }
    };

    // Values with a text: `name()` and `Display` give the text.
    (
        @texts [$($meta:tt)*] $vis:vis $name:ident $repr:ty, $unknown:literal,
        [$( [$($cmeta:tt)*] $konst:ident = $value:expr => $text:literal; )*]
    ) => {
        $crate::code_point! {
            @common [$($meta)*] $vis $name $repr, $unknown, [$( [$($cmeta)*] $konst = $value; )*]
        }

        impl $name {
            /// The text the specification gives this value, or `None` for an unknown value.
            pub fn name(self) -> ::core::option::Option<&'static str> {
                match self {
                    $( Self::$konst => ::core::option::Option::Some($text), )*
                    _ => ::core::option::Option::None,
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.name() {
                    ::core::option::Option::Some(text) => f.write_str(text),
                    ::core::option::Option::None => ::core::write!(f, $unknown, self.0),
                }
            }
        }
    };

    // Values without a text: `name()` gives the const's name.
    (
        @names [$($meta:tt)*] $vis:vis $name:ident $repr:ty, $unknown:literal,
        [$( [$($cmeta:tt)*] $konst:ident = $value:expr; )*]
    ) => {
        $crate::code_point! {
            @common [$($meta)*] $vis $name $repr, $unknown, [$( [$($cmeta)*] $konst = $value; )*]
        }

        impl $name {
            /// The name of this value, or `None` for an unknown value.
            pub fn name(self) -> ::core::option::Option<&'static str> {
                self.const_name()
            }
        }
    };

    // The type, its consts, `Debug` and the conversions.
    (
        @common [$($meta:tt)*] $vis:vis $name:ident $repr:ty, $unknown:literal,
        [$( [$($cmeta:tt)*] $konst:ident = $value:expr; )*]
    ) => {
        $($meta)*
        #[derive(Clone, Copy, Eq, Hash, Ord, PartialEq, PartialOrd)]
        $vis struct $name(pub $repr);

        impl $name {
            $( $($cmeta)* pub const $konst: Self = Self($value); )*

            /// The name of the associated const holding this value.
            fn const_name(self) -> ::core::option::Option<&'static str> {
                match self {
                    $( Self::$konst => ::core::option::Option::Some(::core::stringify!($konst)), )*
                    _ => ::core::option::Option::None,
                }
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.const_name() {
                    ::core::option::Option::Some(name) => f.write_str(name),
                    ::core::option::Option::None => ::core::write!(
                        f,
                        ::core::concat!("{}(", $unknown, ")"),
                        ::core::stringify!($name),
                        self.0
                    ),
                }
            }
        }

        impl ::core::convert::From<$repr> for $name {
            fn from(value: $repr) -> Self {
                Self(value)
            }
        }

        impl ::core::convert::From<$name> for $repr {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::BTreeSet;
    use std::format;
    use std::string::ToString;

    code_point! {
        /// A code point without texts, unknown values in hex.
        #[derive(Default)]
        pub struct Op(u8) {
            /// Zero.
            NOP = 0x00,
            /// Read.
            READ = 0x28,
        }
    }

    code_point! {
        /// A code point with texts, unknown values padded.
        pub(crate) struct Key(u8) as "{:#04x}" {
            /// No sense.
            NO_SENSE = 0 => "NO SENSE",
            /// Illegal request.
            ILLEGAL_REQUEST = 5 => "ILLEGAL REQUEST",
        }
    }

    code_point! {
        /// A wide code point, unknown values in decimal, no docs on the values.
        pub struct Reply(u32) as "{}" {
            ACK = 1,
            ERR_UNSUP = 0x8000_0001,
        }
    }

    code_point! {
        /// A code point with texts and the default format.
        pub struct Status(u16) {
            /// Success.
            SUCCESS = 0 => "success",
        }
    }

    #[test]
    fn known_values_print_their_names() {
        assert_eq!(format!("{:?}", Op::READ), "READ");
        assert_eq!(Op::READ.name(), Some("READ"));
        assert_eq!(format!("{:?}", Key::ILLEGAL_REQUEST), "ILLEGAL_REQUEST");
        assert_eq!(Key::ILLEGAL_REQUEST.name(), Some("ILLEGAL REQUEST"));
        assert_eq!(Key::ILLEGAL_REQUEST.to_string(), "ILLEGAL REQUEST");
        assert_eq!(format!("{:?}", Reply::ERR_UNSUP), "ERR_UNSUP");
        assert_eq!(Status::SUCCESS.to_string(), "success");
    }

    #[test]
    fn unknown_values_print_in_the_chosen_format() {
        assert_eq!(format!("{:?}", Op(0x1c)), "Op(0x1c)");
        assert_eq!(format!("{:?}", Op(5)), "Op(0x5)");
        assert_eq!(format!("{:?}", Key(0x0c)), "Key(0x0c)");
        assert_eq!(Key(0x0c).to_string(), "0x0c");
        assert_eq!(format!("{:?}", Reply(7)), "Reply(7)");
        assert_eq!(format!("{:?}", Status(0x999)), "Status(0x999)");
        assert_eq!(Status(0x999).to_string(), "0x999");
        assert_eq!(Op(0x1c).name(), None);
        assert_eq!(Key(0x0c).name(), None);
    }

    #[test]
    fn unknown_values_round_trip() {
        for raw in [0u8, 0x1c, 0x28, 0xff] {
            assert_eq!(u8::from(Op::from(raw)), raw);
            assert_eq!(u8::from(Key::from(raw)), raw);
        }
        let wide: u32 = Reply(0xdead_beef).into();
        assert_eq!(wide, 0xdead_beef);
        assert_eq!(Reply::from(0x8000_0001), Reply::ERR_UNSUP);
    }

    #[test]
    fn derives_order_and_extra_attributes() {
        assert_eq!(Op::default(), Op::NOP);
        let set: BTreeSet<Op> = [Op::READ, Op(0x1c), Op::NOP].into_iter().collect();
        let ordered: std::vec::Vec<u8> = set.into_iter().map(u8::from).collect();
        assert_eq!(ordered, [0x00, 0x1c, 0x28]);
        assert!(Key::NO_SENSE < Key::ILLEGAL_REQUEST);
    }
}
